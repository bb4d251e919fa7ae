//! A deterministic generator of benign audit traffic: two hours of a small working cluster (one
//! control-plane node, five workers) with its control plane, kubelets, add-ons, Helm releases,
//! CI deploys and administrators, each with its real identity, user agent and request shapes.
//!
//! The same seed gives the same events, byte for byte. `ClusterTraffic::generate` returns the
//! events sorted by `requestReceivedTimestamp` and a `Mix` that says what was produced, so a test
//! can check the traffic is what it claims to be.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// Length of the generated traffic, in seconds of event time.
pub const WINDOW_S: f64 = 7200.0;

const K8S_UA: &str = "v1.29.2 (linux/amd64) kubernetes/4b8e819";
const KUBECTL_MAC: &str = "kubectl/v1.29.3 (darwin/arm64) kubernetes/6813625";
const KUBECTL_LINUX: &str = "kubectl/v1.29.3 (linux/amd64) kubernetes/6813625";
const HELM_UA: &str = "Helm/3.14.2";
const WORKERS: [&str; 5] = ["worker-1", "worker-2", "worker-3", "worker-4", "worker-5"];
const CONTROL_PLANE: &str = "cp-1";
const CONTROL_PLANE_IP: &str = "10.0.1.10";
/// When CI deletes its review namespace.
const REVIEW_NS_DELETED: f64 = 5400.0;

/// splitmix64: small, fast and good enough to shape traffic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn uuid(&mut self) -> String {
        let a = self.next_u64();
        let b = self.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    /// A pod-template or pod-name suffix: lower-case consonants and digits, as Kubernetes makes.
    pub fn suffix(&mut self, n: usize) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..n)
            .map(|_| ALPHABET[self.below(ALPHABET.len() as u64) as usize] as char)
            .collect()
    }
}

/// The authenticated identity, client and address of a request.
#[derive(Clone)]
pub struct Who {
    user: String,
    groups: Vec<String>,
    ua: String,
    ip: String,
}

impl Who {
    fn new(user: &str, groups: &[&str], ua: &str, ip: &str) -> Self {
        Who {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ua: ua.into(),
            ip: ip.into(),
        }
    }

    fn sa(ns: &str, name: &str, ua: &str, ip: &str) -> Self {
        Who {
            user: format!("system:serviceaccount:{ns}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
            ua: ua.into(),
            ip: ip.into(),
        }
    }

    /// A controller of kube-controller-manager running with its own service account
    /// (`--use-service-account-credentials`).
    fn controller(name: &str) -> Self {
        let ua =
            format!("kube-controller-manager/{K8S_UA}/system:serviceaccount:kube-system:{name}");
        Who::sa("kube-system", name, &ua, CONTROL_PLANE_IP)
    }

    fn kubelet(node: &str) -> Self {
        Who::new(
            &format!("system:node:{node}"),
            &["system:nodes", "system:authenticated"],
            &format!("kubelet/{K8S_UA}"),
            &node_ip(node),
        )
    }
}

fn node_ip(node: &str) -> String {
    match node.strip_prefix("worker-") {
        Some(n) => format!("10.0.1.{}", 20 + n.parse::<u32>().unwrap_or(0)),
        None => CONTROL_PLANE_IP.into(),
    }
}

/// A resource: API group ("" for core), version, plural.
#[derive(Clone, Copy)]
pub struct Res {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
}

/// `"apps/v1 deployments"` or `"v1 pods"`.
fn res(spec: &'static str) -> Res {
    let (gv, plural) = spec
        .split_once(' ')
        .expect("spec is 'group/version plural'");
    let (group, version) = gv.split_once('/').unwrap_or(("", gv));
    Res {
        group,
        version,
        plural,
    }
}

impl Res {
    fn path(&self, ns: Option<&str>, name: Option<&str>, sub: Option<&str>) -> String {
        let mut p = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        if let Some(ns) = ns {
            p.push_str("/namespaces/");
            p.push_str(ns);
        }
        p.push('/');
        p.push_str(self.plural);
        if let Some(name) = name {
            p.push('/');
            p.push_str(name);
        }
        if let Some(sub) = sub {
            p.push('/');
            p.push_str(sub);
        }
        p
    }

    fn object_ref(&self, ns: Option<&str>, name: Option<&str>, sub: Option<&str>) -> Value {
        let mut r = json!({"resource": self.plural, "apiVersion": self.version});
        if !self.group.is_empty() {
            r["apiGroup"] = json!(self.group);
        }
        if let Some(ns) = ns {
            r["namespace"] = json!(ns);
        }
        if let Some(name) = name {
            r["name"] = json!(name);
        }
        if let Some(sub) = sub {
            r["subresource"] = json!(sub);
        }
        r
    }
}

/// Percent-encodes a query value the way Go's `url.Values.Encode` does for selectors.
fn enc(v: &str) -> String {
    v.replace('=', "%3D")
        .replace(',', "%2C")
        .replace('/', "%2F")
}

/// What the generator produced, by traffic class, plus the counts the test relies on.
#[derive(Default, Debug)]
pub struct Mix {
    pub by_class: BTreeMap<&'static str, usize>,
    pub ksm_cluster_secret_watches: usize,
    pub ksm_cluster_secret_lists: usize,
    pub helm_installs: usize,
    pub helm_upgrades: usize,
    pub helm_uninstalls: usize,
    pub ci_deploys: usize,
    pub admin_sessions: usize,
    pub admin_execs: usize,
    pub port_forwards: usize,
}

/// One request of the traffic, before it becomes an audit event.
struct Call<'a> {
    class: &'static str,
    t: f64,
    who: &'a Who,
    verb: &'a str,
    uri: String,
    oref: Option<Value>,
    code: u16,
    body: Option<Value>,
}

/// A pod the cluster runs the whole time: its kubelet watches what it mounts.
struct SteadyPod {
    ns: &'static str,
    sa: &'static str,
    node: String,
    secrets: Vec<&'static str>,
    configmaps: Vec<&'static str>,
}

pub struct ClusterTraffic {
    rng: Rng,
    events: Vec<(i64, String)>,
    rv: u64,
    pub mix: Mix,
}

impl ClusterTraffic {
    /// Generates the traffic for `seed`; returns the JSON lines sorted by time, and the mix.
    pub fn generate(seed: u64) -> (Vec<String>, Mix) {
        let mut g = ClusterTraffic {
            rng: Rng::new(seed),
            events: Vec::new(),
            rv: 48_211_907,
            mix: Mix::default(),
        };
        g.control_plane();
        g.kubelets();
        g.addons();
        g.workload_controllers();
        g.helm_releases();
        g.ci_deploys();
        g.administrators();
        g.events.sort_by_key(|(t, _)| *t);
        let lines = g.events.into_iter().map(|(_, l)| l).collect();
        (lines, g.mix)
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1 + self.rng.below(40);
        self.rv
    }

    fn push_event(&mut self, class: &'static str, t: f64, ev: Value) {
        if !(0.0..WINDOW_S).contains(&t) {
            return;
        }
        *self.mix.by_class.entry(class).or_default() += 1;
        self.events
            .push(((t * 1e6) as i64, serde_json::to_string(&ev).expect("JSON")));
    }

    fn base_event(&mut self, c: &Call, id: &str, stage: &str, t0: f64, t1: f64) -> Value {
        let level = if c.body.is_some() {
            "Request"
        } else {
            "Metadata"
        };
        let mut ev = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": level,
            "auditID": id,
            "stage": stage,
            "requestURI": c.uri,
            "verb": c.verb,
            "user": {"username": c.who.user, "groups": c.who.groups},
            "sourceIPs": [c.who.ip],
            "userAgent": c.who.ua,
            "responseStatus": {"metadata": {}, "code": c.code},
            "requestReceivedTimestamp": ts(t0),
            "stageTimestamp": ts(t1),
            "annotations": {
                "authorization.k8s.io/decision": if c.code == 403 { "forbid" } else { "allow" },
                "authorization.k8s.io/reason": "",
            },
        });
        if let Some(o) = &c.oref {
            ev["objectRef"] = o.clone();
        }
        if let Some(b) = &c.body {
            ev["requestObject"] = b.clone();
        }
        ev
    }

    fn emit(&mut self, c: Call) {
        let id = self.rng.uuid();
        let latency = self.rng.range(0.001, 0.03);
        let ev = self.base_event(&c, &id, "ResponseComplete", c.t, c.t + latency);
        self.push_event(c.class, c.t, ev);
    }

    /// A long-running request (watch, exec, port-forward): ResponseStarted, then ResponseComplete
    /// with the same auditID when it ends `dur` seconds later.
    fn emit_long(&mut self, c: Call, dur: f64) {
        let id = self.rng.uuid();
        let started = self.base_event(&c, &id, "ResponseStarted", c.t, c.t + 0.002);
        let done = self.base_event(&c, &id, "ResponseComplete", c.t, c.t + dur);
        self.push_event(c.class, c.t, started);
        self.push_event(c.class, c.t + dur, done);
    }

    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        class: &'static str,
        t: f64,
        who: &Who,
        verb: &str,
        r: Res,
        ns: Option<&str>,
        name: Option<&str>,
        sub: Option<&str>,
        query: &str,
        code: u16,
        body: Option<Value>,
    ) {
        let mut uri = r.path(ns, name, sub);
        if !query.is_empty() {
            uri.push('?');
            uri.push_str(query);
        }
        self.emit(Call {
            class,
            t,
            who,
            verb,
            uri,
            oref: Some(r.object_ref(ns, name, sub)),
            code,
            body,
        });
    }

    /// A non-resource request (`/api`, `/apis`, `/version`): discovery.
    fn discovery(&mut self, class: &'static str, t: f64, who: &Who) {
        for (i, p) in ["/api?timeout=32s", "/apis?timeout=32s"].iter().enumerate() {
            self.emit(Call {
                class,
                t: t + i as f64 * 0.01,
                who,
                verb: "get",
                uri: p.to_string(),
                oref: None,
                code: 200,
                body: None,
            });
        }
    }

    /// A client-go reflector: a list (when `start` is given: the component starts in the window)
    /// then watches that time out after 5 to 10 minutes and are renewed from the last
    /// resourceVersion; now and then (a 410 Gone after compaction) a relist.
    #[allow(clippy::too_many_arguments)]
    fn informer(
        &mut self,
        class: &'static str,
        who: &Who,
        r: Res,
        ns: Option<&str>,
        field: &str,
        label: &str,
        start: Option<f64>,
    ) {
        let (mut t, mut list) = match start {
            Some(s) => (s, true),
            None => (-self.rng.range(0.0, 600.0), false),
        };
        let is_ksm_secrets = who.user == "system:serviceaccount:monitoring:kube-state-metrics"
            && r.plural == "secrets"
            && ns.is_none();
        let mut sel = String::new();
        if !field.is_empty() {
            sel.push_str(&format!("fieldSelector={}&", enc(field)));
        }
        if !label.is_empty() {
            sel.push_str(&format!("labelSelector={}&", enc(label)));
        }
        while t < WINDOW_S {
            if list {
                if is_ksm_secrets && t >= 0.0 {
                    self.mix.ksm_cluster_secret_lists += 1;
                }
                let q = format!("{sel}limit=500&resourceVersion=0");
                self.call(class, t, who, "list", r, ns, None, None, &q, 200, None);
                t += self.rng.range(0.05, 0.6);
            }
            let timeout = 300 + self.rng.below(300);
            let rv = self.next_rv();
            let q = format!(
                "allowWatchBookmarks=true&{sel}resourceVersion={rv}&timeoutSeconds={timeout}&watch=true"
            );
            if is_ksm_secrets && t >= 0.0 {
                self.mix.ksm_cluster_secret_watches += 1;
            }
            let call = Call {
                class,
                t,
                who,
                verb: "watch",
                uri: format!("{}?{q}", r.path(ns, None, None)),
                oref: Some(r.object_ref(ns, None, None)),
                code: 200,
                body: None,
            };
            self.emit_long(call, timeout as f64);
            t += timeout as f64 + self.rng.range(0.001, 0.2);
            list = self.rng.chance(0.03);
        }
    }

    /// Leader election on a Lease: the leader renews every `period` seconds (client-go sends an
    /// update; a get first now and then, after a conflict).
    fn leader_lease(&mut self, class: &'static str, who: &Who, ns: &str, name: &str, period: f64) {
        let lease = res("coordination.k8s.io/v1 leases");
        let mut t = self.rng.range(0.0, period);
        while t < WINDOW_S {
            if self.rng.chance(0.01) {
                self.call(
                    class,
                    t,
                    who,
                    "get",
                    lease,
                    Some(ns),
                    Some(name),
                    None,
                    "timeout=5s",
                    200,
                    None,
                );
            }
            self.call(
                class,
                t + 0.003,
                who,
                "update",
                lease,
                Some(ns),
                Some(name),
                None,
                "timeout=5s",
                200,
                None,
            );
            t += period + self.rng.range(-0.05, 0.05);
        }
    }

    fn control_plane(&mut self) {
        let class = "control plane";
        let apiserver = Who::new(
            "system:apiserver",
            &["system:masters"],
            &format!("kube-apiserver/{K8S_UA}"),
            "::1",
        );
        self.leader_lease(
            class,
            &apiserver,
            "kube-system",
            "apiserver-q6w3z5k2cbhgr7vqxyjt2s3ffq",
            10.0,
        );

        let kcm_le = Who::new(
            "system:kube-controller-manager",
            &["system:authenticated"],
            &format!("kube-controller-manager/{K8S_UA}/leader-election"),
            CONTROL_PLANE_IP,
        );
        self.leader_lease(
            class,
            &kcm_le,
            "kube-system",
            "kube-controller-manager",
            2.0,
        );
        let sched_le = Who::new(
            "system:kube-scheduler",
            &["system:authenticated"],
            &format!("kube-scheduler/{K8S_UA}/leader-election"),
            CONTROL_PLANE_IP,
        );
        self.leader_lease(class, &sched_le, "kube-system", "kube-scheduler", 2.0);

        // kube-controller-manager's shared informers, as system:kube-controller-manager.
        let kcm = Who::new(
            "system:kube-controller-manager",
            &["system:authenticated"],
            &format!("kube-controller-manager/{K8S_UA}/shared-informers"),
            CONTROL_PLANE_IP,
        );
        for spec in [
            "v1 pods",
            "v1 nodes",
            "v1 namespaces",
            "v1 services",
            "v1 endpoints",
            "v1 secrets",
            "v1 configmaps",
            "v1 serviceaccounts",
            "v1 persistentvolumes",
            "v1 persistentvolumeclaims",
            "v1 replicationcontrollers",
            "v1 resourcequotas",
            "v1 limitranges",
            "v1 podtemplates",
            "apps/v1 deployments",
            "apps/v1 replicasets",
            "apps/v1 statefulsets",
            "apps/v1 daemonsets",
            "apps/v1 controllerrevisions",
            "batch/v1 jobs",
            "batch/v1 cronjobs",
            "discovery.k8s.io/v1 endpointslices",
            "policy/v1 poddisruptionbudgets",
            "autoscaling/v2 horizontalpodautoscalers",
            "rbac.authorization.k8s.io/v1 roles",
            "rbac.authorization.k8s.io/v1 rolebindings",
            "rbac.authorization.k8s.io/v1 clusterroles",
            "rbac.authorization.k8s.io/v1 clusterrolebindings",
            "storage.k8s.io/v1 storageclasses",
            "storage.k8s.io/v1 csinodes",
            "storage.k8s.io/v1 volumeattachments",
            "networking.k8s.io/v1 ingresses",
            "certificates.k8s.io/v1 certificatesigningrequests",
            "coordination.k8s.io/v1 leases",
        ] {
            self.informer(class, &kcm, res(spec), None, "", "", None);
        }

        let sched = Who::new(
            "system:kube-scheduler",
            &["system:authenticated"],
            &format!("kube-scheduler/{K8S_UA}/scheduler"),
            CONTROL_PLANE_IP,
        );
        for spec in [
            "v1 nodes",
            "v1 services",
            "v1 persistentvolumes",
            "v1 persistentvolumeclaims",
            "v1 namespaces",
            "apps/v1 replicasets",
            "apps/v1 statefulsets",
            "policy/v1 poddisruptionbudgets",
            "storage.k8s.io/v1 storageclasses",
            "storage.k8s.io/v1 csinodes",
            "storage.k8s.io/v1 csidrivers",
            "storage.k8s.io/v1 csistoragecapacities",
        ] {
            self.informer(class, &sched, res(spec), None, "", "", None);
        }
        self.informer(
            class,
            &sched,
            res("v1 pods"),
            None,
            "status.phase!=Succeeded,status.phase!=Failed",
            "",
            None,
        );

        // HPA controller reads pod metrics every 15 s for its two autoscalers.
        let hpa = Who::controller("horizontal-pod-autoscaler");
        let metrics = res("metrics.k8s.io/v1beta1 pods");
        let hpas = res("autoscaling/v2 horizontalpodautoscalers");
        for (ns, app) in [("shop", "frontend"), ("shop", "cart")] {
            let mut t = self.rng.range(0.0, 15.0);
            while t < WINDOW_S {
                let q = format!(
                    "labelSelector={}",
                    enc(&format!("app.kubernetes.io/name={app}"))
                );
                self.call(
                    class,
                    t,
                    &hpa,
                    "list",
                    metrics,
                    Some(ns),
                    None,
                    None,
                    &q,
                    200,
                    None,
                );
                if self.rng.chance(0.2) {
                    self.call(
                        class,
                        t + 0.02,
                        &hpa,
                        "update",
                        hpas,
                        Some(ns),
                        Some(app),
                        Some("status"),
                        "",
                        200,
                        None,
                    );
                }
                t += 15.0;
            }
        }
    }

    fn steady_pods(&mut self) -> Vec<SteadyPod> {
        let mut pods = Vec::new();
        let node_of = |i: usize| WORKERS[i % WORKERS.len()].to_string();
        let mut add = |ns, sa, node: String, secrets: &[&'static str], cms: &[&'static str]| {
            pods.push(SteadyPod {
                ns,
                sa,
                node,
                secrets: secrets.to_vec(),
                configmaps: cms.to_vec(),
            })
        };
        for w in WORKERS.iter().chain([CONTROL_PLANE].iter()) {
            add(
                "kube-system",
                "kube-proxy",
                w.to_string(),
                &[],
                &["kube-proxy"],
            );
            add("kube-system", "ebs-csi-node-sa", w.to_string(), &[], &[]);
        }
        // namespace, service account, replicas, Secrets and ConfigMaps it mounts
        type Spec<'a> = (&'a str, &'a str, usize, &'a [&'a str], &'a [&'a str]);
        let specs: &[Spec] = &[
            ("kube-system", "coredns", 2, &[], &["coredns"]),
            ("kube-system", "metrics-server", 1, &[], &[]),
            ("kube-system", "cluster-autoscaler", 1, &[], &[]),
            ("kube-system", "ebs-csi-controller-sa", 2, &[], &[]),
            (
                "ingress-nginx",
                "ingress-nginx",
                2,
                &["ingress-nginx-admission"],
                &["ingress-nginx-controller"],
            ),
            ("cert-manager", "cert-manager", 1, &[], &[]),
            ("cert-manager", "cert-manager-cainjector", 1, &[], &[]),
            (
                "cert-manager",
                "cert-manager-webhook",
                1,
                &["cert-manager-webhook-ca"],
                &[],
            ),
            (
                "monitoring",
                "prometheus-k8s",
                2,
                &[
                    "prometheus-k8s",
                    "prometheus-k8s-tls-assets-0",
                    "prometheus-k8s-web-config",
                ],
                &["prometheus-k8s-rulefiles-0"],
            ),
            ("monitoring", "kube-state-metrics", 1, &[], &[]),
            ("monitoring", "prometheus-operator", 1, &[], &[]),
            (
                "monitoring",
                "grafana",
                1,
                &["grafana", "grafana-datasources"],
                &["grafana-dashboards"],
            ),
            (
                "monitoring",
                "alertmanager-main",
                2,
                &[
                    "alertmanager-main-generated",
                    "alertmanager-main-web-config",
                ],
                &[],
            ),
            (
                "argocd",
                "argocd-application-controller",
                1,
                &[],
                &["argocd-cm", "argocd-rbac-cm"],
            ),
            ("argocd", "argocd-server", 1, &[], &["argocd-cm"]),
            ("argocd", "argocd-repo-server", 1, &[], &["argocd-cm"]),
            (
                "external-dns",
                "external-dns",
                1,
                &["external-dns-aws"],
                &[],
            ),
            ("shop", "frontend", 3, &[], &["frontend-config"]),
            ("shop", "cart", 2, &["cart-redis"], &["cart-config"]),
            (
                "shop",
                "checkout",
                2,
                &["checkout-db", "checkout-stripe"],
                &["checkout-config"],
            ),
            ("staging", "frontend", 1, &[], &["frontend-config"]),
            ("staging", "cart", 1, &["cart-redis"], &["cart-config"]),
            (
                "staging",
                "checkout",
                1,
                &["checkout-db"],
                &["checkout-config"],
            ),
            (
                "ci",
                "gitlab-runner",
                1,
                &["gitlab-runner"],
                &["gitlab-runner"],
            ),
        ];
        let mut i = 0;
        for (ns, sa, n, secrets, cms) in specs {
            for _ in 0..*n {
                add(ns, sa, node_of(i), secrets, cms);
                i += 1;
            }
        }
        pods
    }

    fn kubelets(&mut self) {
        let class = "kubelets";
        let lease = res("coordination.k8s.io/v1 leases");
        let nodes = res("v1 nodes");
        for node in WORKERS.iter().chain([CONTROL_PLANE].iter()) {
            let who = Who::kubelet(node);
            let mut t = self.rng.range(0.0, 10.0);
            while t < WINDOW_S {
                self.call(
                    class,
                    t,
                    &who,
                    "update",
                    lease,
                    Some("kube-node-lease"),
                    Some(node),
                    None,
                    "timeout=10s",
                    200,
                    None,
                );
                t += 10.0 + self.rng.range(-0.02, 0.02);
            }
            let mut t = self.rng.range(0.0, 300.0);
            while t < WINDOW_S {
                self.call(
                    class,
                    t,
                    &who,
                    "get",
                    nodes,
                    None,
                    Some(node),
                    None,
                    "resourceVersion=0&timeout=10s",
                    200,
                    None,
                );
                self.call(
                    class,
                    t + 0.01,
                    &who,
                    "patch",
                    nodes,
                    None,
                    Some(node),
                    Some("status"),
                    "timeout=10s",
                    200,
                    None,
                );
                t += 300.0 + self.rng.range(-1.0, 1.0);
            }
            let field = format!("metadata.name={node}");
            self.informer(class, &who, nodes, None, &field, "", None);
            let field = format!("spec.nodeName={node}");
            self.informer(class, &who, res("v1 pods"), None, &field, "", None);
            for spec in [
                "v1 services",
                "node.k8s.io/v1 runtimeclasses",
                "storage.k8s.io/v1 csidrivers",
            ] {
                self.informer(class, &who, res(spec), None, "", "", None);
            }
        }
        // What each running pod mounts: per-object watches on its Secrets and ConfigMaps, and a
        // projected service-account token refreshed at 80% of its hour.
        let pods = self.steady_pods();
        for p in &pods {
            let who = Who::kubelet(&p.node);
            for s in &p.secrets {
                let f = format!("metadata.name={s}");
                self.informer(class, &who, res("v1 secrets"), Some(p.ns), &f, "", None);
            }
            for c in p.configmaps.iter().chain(["kube-root-ca.crt"].iter()) {
                let f = format!("metadata.name={c}");
                self.informer(class, &who, res("v1 configmaps"), Some(p.ns), &f, "", None);
            }
            let mut t = self.rng.range(0.0, 2880.0);
            while t < WINDOW_S {
                let body = json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                    "spec": {"audiences": ["https://kubernetes.default.svc.cluster.local"], "expirationSeconds": 3607}});
                self.call(
                    class,
                    t,
                    &who,
                    "create",
                    res("v1 serviceaccounts"),
                    Some(p.ns),
                    Some(p.sa),
                    Some("token"),
                    "",
                    201,
                    Some(body),
                );
                t += 2880.0;
            }
        }
    }

    fn addons(&mut self) {
        let class = "add-on controllers";
        let mut ip_n = 3u32;
        let mut pod_ip = |rng: &mut Rng| {
            ip_n += 1;
            format!("10.244.{}.{}", 1 + rng.below(5), ip_n)
        };
        let client = |name: &str, version: &str| {
            format!("{name}/{version} (linux/amd64) kubernetes/$Format")
        };

        for node in WORKERS.iter().chain([CONTROL_PLANE].iter()) {
            let who = Who::sa(
                "kube-system",
                "kube-proxy",
                &format!("kube-proxy/{K8S_UA}"),
                &node_ip(node),
            );
            self.informer(
                class,
                &who,
                res("v1 services"),
                None,
                "",
                "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name",
                None,
            );
            self.informer(
                class,
                &who,
                res("discovery.k8s.io/v1 endpointslices"),
                None,
                "",
                "!service.kubernetes.io/headless,!service.kubernetes.io/service-proxy-name",
                None,
            );
            let f = format!("metadata.name={node}");
            self.informer(class, &who, res("v1 nodes"), None, &f, "", None);
        }
        for _ in 0..2 {
            let ip = pod_ip(&mut self.rng);
            let who = Who::sa(
                "kube-system",
                "coredns",
                "coredns/v1.11.1 (linux/amd64) kubernetes/$Format",
                &ip,
            );
            for spec in [
                "v1 services",
                "v1 namespaces",
                "discovery.k8s.io/v1 endpointslices",
            ] {
                self.informer(class, &who, res(spec), None, "", "", None);
            }
        }

        // Informer sets of the add-ons, cluster-wide unless a namespace is given.
        type Set<'a> = (
            &'a str,
            &'a str,
            &'a str,
            &'a [(&'static str, Option<&'static str>)],
        );
        let sets: &[Set] = &[
            (
                "cert-manager",
                "cert-manager",
                "cert-manager/v1.14.4",
                &[
                    ("v1 secrets", None),
                    ("cert-manager.io/v1 certificates", None),
                    ("cert-manager.io/v1 certificaterequests", None),
                    ("cert-manager.io/v1 issuers", None),
                    ("cert-manager.io/v1 clusterissuers", None),
                    ("acme.cert-manager.io/v1 orders", None),
                    ("acme.cert-manager.io/v1 challenges", None),
                    ("networking.k8s.io/v1 ingresses", None),
                    ("v1 pods", None),
                    ("v1 services", None),
                ],
            ),
            (
                "cert-manager",
                "cert-manager-cainjector",
                "cainjector/v1.14.4",
                &[
                    ("v1 secrets", None),
                    ("cert-manager.io/v1 certificates", None),
                    (
                        "admissionregistration.k8s.io/v1 validatingwebhookconfigurations",
                        None,
                    ),
                    (
                        "admissionregistration.k8s.io/v1 mutatingwebhookconfigurations",
                        None,
                    ),
                    ("apiextensions.k8s.io/v1 customresourcedefinitions", None),
                ],
            ),
            (
                "ingress-nginx",
                "ingress-nginx",
                "nginx-ingress-controller/v1.10.0",
                &[
                    ("v1 secrets", None),
                    ("v1 services", None),
                    ("discovery.k8s.io/v1 endpointslices", None),
                    ("networking.k8s.io/v1 ingresses", None),
                    ("networking.k8s.io/v1 ingressclasses", None),
                    ("v1 configmaps", Some("ingress-nginx")),
                    ("v1 pods", Some("ingress-nginx")),
                ],
            ),
            (
                "monitoring",
                "kube-state-metrics",
                "v2.10.1",
                &[
                    ("v1 secrets", None),
                    ("v1 configmaps", None),
                    ("v1 pods", None),
                    ("v1 nodes", None),
                    ("v1 namespaces", None),
                    ("v1 services", None),
                    ("v1 endpoints", None),
                    ("v1 persistentvolumes", None),
                    ("v1 persistentvolumeclaims", None),
                    ("v1 resourcequotas", None),
                    ("v1 limitranges", None),
                    ("v1 replicationcontrollers", None),
                    ("v1 serviceaccounts", None),
                    ("apps/v1 deployments", None),
                    ("apps/v1 replicasets", None),
                    ("apps/v1 statefulsets", None),
                    ("apps/v1 daemonsets", None),
                    ("batch/v1 jobs", None),
                    ("batch/v1 cronjobs", None),
                    ("policy/v1 poddisruptionbudgets", None),
                    ("autoscaling/v2 horizontalpodautoscalers", None),
                    ("networking.k8s.io/v1 ingresses", None),
                    ("networking.k8s.io/v1 networkpolicies", None),
                    ("storage.k8s.io/v1 storageclasses", None),
                    ("storage.k8s.io/v1 volumeattachments", None),
                    ("certificates.k8s.io/v1 certificatesigningrequests", None),
                    ("coordination.k8s.io/v1 leases", None),
                    (
                        "admissionregistration.k8s.io/v1 validatingwebhookconfigurations",
                        None,
                    ),
                    (
                        "admissionregistration.k8s.io/v1 mutatingwebhookconfigurations",
                        None,
                    ),
                ],
            ),
            (
                "monitoring",
                "prometheus-operator",
                "PrometheusOperator/0.72.0",
                &[
                    ("v1 secrets", Some("monitoring")),
                    ("v1 configmaps", Some("monitoring")),
                    ("apps/v1 statefulsets", Some("monitoring")),
                    ("v1 namespaces", None),
                    ("monitoring.coreos.com/v1 prometheuses", None),
                    ("monitoring.coreos.com/v1 alertmanagers", None),
                    ("monitoring.coreos.com/v1 servicemonitors", None),
                    ("monitoring.coreos.com/v1 podmonitors", None),
                    ("monitoring.coreos.com/v1 prometheusrules", None),
                    ("monitoring.coreos.com/v1 probes", None),
                ],
            ),
            (
                "monitoring",
                "prometheus-k8s",
                "Prometheus/2.50.1",
                &[
                    ("v1 pods", None),
                    ("v1 services", None),
                    ("discovery.k8s.io/v1 endpointslices", None),
                    ("v1 nodes", None),
                ],
            ),
            (
                "kube-system",
                "metrics-server",
                "metrics-server/v0.7.0",
                &[
                    ("v1 nodes", None),
                    ("v1 pods", None),
                    ("v1 configmaps", Some("kube-system")),
                ],
            ),
            (
                "external-dns",
                "external-dns",
                "external-dns/v0.14.0",
                &[
                    ("v1 services", None),
                    ("networking.k8s.io/v1 ingresses", None),
                    ("v1 nodes", None),
                    ("v1 pods", None),
                    ("discovery.k8s.io/v1 endpointslices", None),
                ],
            ),
            (
                "argocd",
                "argocd-application-controller",
                "argocd-application-controller/v2.10.4",
                &[
                    ("v1 secrets", None),
                    ("v1 configmaps", None),
                    ("v1 services", None),
                    ("v1 pods", None),
                    ("v1 serviceaccounts", None),
                    ("v1 namespaces", None),
                    ("v1 persistentvolumeclaims", None),
                    ("apps/v1 deployments", None),
                    ("apps/v1 replicasets", None),
                    ("apps/v1 statefulsets", None),
                    ("apps/v1 daemonsets", None),
                    ("batch/v1 jobs", None),
                    ("batch/v1 cronjobs", None),
                    ("networking.k8s.io/v1 ingresses", None),
                    ("rbac.authorization.k8s.io/v1 roles", None),
                    ("rbac.authorization.k8s.io/v1 rolebindings", None),
                    ("argoproj.io/v1alpha1 applications", Some("argocd")),
                    ("argoproj.io/v1alpha1 appprojects", Some("argocd")),
                ],
            ),
            (
                "argocd",
                "argocd-server",
                "argocd-server/v2.10.4",
                &[
                    ("v1 secrets", Some("argocd")),
                    ("v1 configmaps", Some("argocd")),
                    ("argoproj.io/v1alpha1 applications", Some("argocd")),
                ],
            ),
            (
                "kube-system",
                "cluster-autoscaler",
                "cluster-autoscaler/v1.29.0",
                &[
                    ("v1 pods", None),
                    ("v1 nodes", None),
                    ("v1 services", None),
                    ("v1 replicationcontrollers", None),
                    ("apps/v1 replicasets", None),
                    ("apps/v1 statefulsets", None),
                    ("apps/v1 daemonsets", None),
                    ("batch/v1 jobs", None),
                    ("policy/v1 poddisruptionbudgets", None),
                    ("storage.k8s.io/v1 csinodes", None),
                    ("v1 persistentvolumeclaims", None),
                    ("v1 persistentvolumes", None),
                ],
            ),
            (
                "kube-system",
                "ebs-csi-controller-sa",
                "csi-provisioner/v4.0.0",
                &[
                    ("v1 persistentvolumeclaims", None),
                    ("v1 persistentvolumes", None),
                    ("storage.k8s.io/v1 storageclasses", None),
                    ("storage.k8s.io/v1 volumeattachments", None),
                    ("storage.k8s.io/v1 csinodes", None),
                ],
            ),
        ];
        for (ns, sa, ua, set) in sets {
            let ip = pod_ip(&mut self.rng);
            let who = Who::sa(
                ns,
                sa,
                &client(
                    ua.split('/').next().unwrap_or(ua),
                    ua.rsplit('/').next().unwrap_or(ua),
                ),
                &ip,
            );
            let who = if *sa == "kube-state-metrics" {
                Who {
                    ua: format!("kube-state-metrics/{ua} (linux/amd64) kubernetes/$Format"),
                    ..who
                }
            } else {
                who
            };
            for (spec, rns) in set.iter() {
                self.informer(class, &who, res(spec), *rns, "", "", None);
            }
        }
        // kube-state-metrics is restarted once in the window (its pod was rescheduled by the
        // cluster autoscaler's scale-down): a fresh process lists everything before watching.
        let ksm = Who::sa(
            "monitoring",
            "kube-state-metrics",
            "kube-state-metrics/v2.10.1 (linux/amd64) kubernetes/$Format",
            "10.244.2.77",
        );
        let restart = self.rng.range(2400.0, 3600.0);
        for spec in [
            "v1 secrets",
            "v1 configmaps",
            "v1 pods",
            "v1 nodes",
            "apps/v1 deployments",
        ] {
            let at = restart + self.rng.range(0.0, 1.0);
            self.informer(class, &ksm, res(spec), None, "", "", Some(at));
        }

        // Leader election of the add-ons.
        for (ns, sa, ua, lns, lease, period) in [
            (
                "cert-manager",
                "cert-manager",
                "cert-manager/v1.14.4",
                "kube-system",
                "cert-manager-controller",
                15.0,
            ),
            (
                "cert-manager",
                "cert-manager-cainjector",
                "cainjector/v1.14.4",
                "kube-system",
                "cert-manager-cainjector-leader-election",
                15.0,
            ),
            (
                "ingress-nginx",
                "ingress-nginx",
                "nginx-ingress-controller/v1.10.0",
                "ingress-nginx",
                "ingress-nginx-leader",
                7.5,
            ),
            (
                "kube-system",
                "cluster-autoscaler",
                "cluster-autoscaler/v1.29.0",
                "kube-system",
                "cluster-autoscaler",
                2.0,
            ),
            (
                "kube-system",
                "ebs-csi-controller-sa",
                "csi-provisioner/v4.0.0",
                "kube-system",
                "ebs-csi-aws-com",
                5.0,
            ),
            (
                "kube-system",
                "ebs-csi-controller-sa",
                "csi-attacher/v4.5.0",
                "kube-system",
                "external-attacher-leader-ebs-csi-aws-com",
                5.0,
            ),
            (
                "monitoring",
                "prometheus-operator",
                "PrometheusOperator/0.72.0",
                "monitoring",
                "prometheus-operator",
                10.0,
            ),
        ] {
            let ip = pod_ip(&mut self.rng);
            let name = ua.split('/').next().unwrap_or(ua);
            let who = Who::sa(
                ns,
                sa,
                &format!(
                    "{name}/{} (linux/amd64) kubernetes/$Format",
                    ua.rsplit('/').next().unwrap_or("")
                ),
                &ip,
            );
            self.leader_lease(class, &who, lns, lease, period);
        }

        // CSI node plugins read their node, and cert-manager renews a certificate.
        for node in WORKERS.iter() {
            let who = Who::sa(
                "kube-system",
                "ebs-csi-node-sa",
                "aws-ebs-csi-driver/v1.28.0 (linux/amd64) kubernetes/$Format",
                &node_ip(node),
            );
            let mut t = self.rng.range(0.0, 600.0);
            while t < WINDOW_S {
                self.call(
                    class,
                    t,
                    &who,
                    "get",
                    res("v1 nodes"),
                    None,
                    Some(node),
                    None,
                    "",
                    200,
                    None,
                );
                t += 600.0;
            }
        }
        let cm = Who::sa(
            "cert-manager",
            "cert-manager",
            "cert-manager/v1.14.4 (linux/amd64) kubernetes/$Format",
            "10.244.3.12",
        );
        let t = self.rng.range(1000.0, 5000.0);
        let cr = res("cert-manager.io/v1 certificaterequests");
        self.call(
            class,
            t,
            &cm,
            "create",
            cr,
            Some("shop"),
            Some("shop-tls-1"),
            None,
            "",
            201,
            Some(json!({"kind": "CertificateRequest"})),
        );
        self.call(
            class,
            t + 4.0,
            &cm,
            "update",
            res("v1 secrets"),
            Some("shop"),
            Some("shop-tls"),
            None,
            "",
            200,
            None,
        );
        self.call(
            class,
            t + 4.2,
            &cm,
            "update",
            res("cert-manager.io/v1 certificates"),
            Some("shop"),
            Some("shop-tls"),
            Some("status"),
            "",
            200,
            None,
        );
    }

    /// A pod created by a workload controller, as the controller sends it.
    fn pod_body(
        ns: &str,
        owner_kind: &str,
        owner: &str,
        app: &str,
        image: &str,
        uid: u32,
    ) -> Value {
        json!({
            "kind": "Pod", "apiVersion": "v1",
            "metadata": {
                "generateName": format!("{owner}-"), "namespace": ns,
                "labels": {"app.kubernetes.io/name": app},
                "ownerReferences": [{"apiVersion": if owner_kind == "Job" { "batch/v1" } else { "apps/v1" },
                    "kind": owner_kind, "name": owner, "controller": true, "blockOwnerDeletion": true}]
            },
            "spec": {
                "serviceAccountName": app,
                "securityContext": {"runAsNonRoot": true, "runAsUser": uid, "fsGroup": uid,
                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": app, "image": image, "imagePullPolicy": "IfNotPresent",
                    "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                    "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                        "capabilities": {"drop": ["ALL"]}}
                }]
            }
        })
    }

    fn deployment_body(ns: &str, app: &str, image: &str, replicas: u32, uid: u32) -> Value {
        let pod = Self::pod_body(ns, "ReplicaSet", app, app, image, uid);
        json!({
            "kind": "Deployment", "apiVersion": "apps/v1",
            "metadata": {"name": app, "namespace": ns, "labels": {"app.kubernetes.io/name": app,
                "app.kubernetes.io/managed-by": "Helm"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app.kubernetes.io/name": app}},
                "template": {"metadata": {"labels": {"app.kubernetes.io/name": app}}, "spec": pod["spec"].clone()}}
        })
    }

    /// What the control plane and the kubelets do for one pod: the owner's controller creates
    /// it, the scheduler binds it, the kubelet starts it and reports status and events, the
    /// endpointslice controller adds it. Returns the pod name.
    #[allow(clippy::too_many_arguments)]
    fn pod_start(
        &mut self,
        t: f64,
        ns: &str,
        owner_kind: &str,
        owner: &str,
        app: &str,
        image: &str,
        creator: &Who,
    ) -> (String, String) {
        let class = "workload churn";
        let name = format!("{owner}-{}", self.rng.suffix(5));
        let node = self.rng.pick(&WORKERS).to_string();
        let pods = res("v1 pods");
        let body = Self::pod_body(ns, owner_kind, owner, app, image, 10001);
        self.call(
            class,
            t,
            creator,
            "create",
            pods,
            Some(ns),
            Some(&name),
            None,
            "",
            201,
            Some(body),
        );
        let sched = Who::new(
            "system:kube-scheduler",
            &["system:authenticated"],
            &format!("kube-scheduler/{K8S_UA}/scheduler"),
            CONTROL_PLANE_IP,
        );
        self.call(
            class,
            t + 0.02,
            &sched,
            "create",
            pods,
            Some(ns),
            Some(&name),
            Some("binding"),
            "",
            201,
            None,
        );
        self.call(
            class,
            t + 0.03,
            &sched,
            "create",
            res("events.k8s.io/v1 events"),
            Some(ns),
            None,
            None,
            "",
            201,
            None,
        );
        let kubelet = Who::kubelet(&node);
        let ev = res("v1 events");
        let mut tk = t + 0.2;
        for _ in 0..4 {
            self.call(
                class,
                tk,
                &kubelet,
                "create",
                ev,
                Some(ns),
                None,
                None,
                "",
                201,
                None,
            );
            tk += self.rng.range(0.1, 3.0);
        }
        for _ in 0..2 {
            self.call(
                class,
                tk,
                &kubelet,
                "patch",
                pods,
                Some(ns),
                Some(&name),
                Some("status"),
                "",
                200,
                None,
            );
            tk += self.rng.range(1.0, 8.0);
        }
        if owner_kind != "Job" {
            let eps = Who::controller("endpointslice-controller");
            let slice = format!("{app}-{}", self.rng.suffix(5));
            self.call(
                class,
                tk,
                &eps,
                "update",
                res("discovery.k8s.io/v1 endpointslices"),
                Some(ns),
                Some(&slice),
                None,
                "",
                200,
                None,
            );
        }
        (name, node)
    }

    fn pod_stop(&mut self, t: f64, ns: &str, name: &str, node: &str, deleter: Option<&Who>) {
        let class = "workload churn";
        let pods = res("v1 pods");
        if let Some(d) = deleter {
            self.call(
                class,
                t,
                d,
                "delete",
                pods,
                Some(ns),
                Some(name),
                None,
                "",
                200,
                None,
            );
        }
        let kubelet = Who::kubelet(node);
        self.call(
            class,
            t + 0.5,
            &kubelet,
            "create",
            res("v1 events"),
            Some(ns),
            None,
            None,
            "",
            201,
            None,
        );
        self.call(
            class,
            t + 2.0,
            &kubelet,
            "patch",
            pods,
            Some(ns),
            Some(name),
            Some("status"),
            "",
            200,
            None,
        );
        self.call(
            class,
            t + 2.1,
            &kubelet,
            "delete",
            pods,
            Some(ns),
            Some(name),
            None,
            "",
            200,
            None,
        );
    }

    /// A Deployment rollout after its template changed: a new ReplicaSet scaled up pod by pod,
    /// the old one scaled down.
    fn rollout(&mut self, t: f64, ns: &str, app: &str, image: &str, replicas: u32) {
        let class = "workload churn";
        let dc = Who::controller("deployment-controller");
        let rsc = Who::controller("replicaset-controller");
        let rs = format!("{app}-{}", self.rng.suffix(9));
        let rsr = res("apps/v1 replicasets");
        self.call(
            class,
            t,
            &dc,
            "create",
            rsr,
            Some(ns),
            Some(&rs),
            None,
            "",
            201,
            Some(json!({"kind": "ReplicaSet", "apiVersion": "apps/v1"})),
        );
        self.call(
            class,
            t + 0.01,
            &dc,
            "update",
            res("apps/v1 deployments"),
            Some(ns),
            Some(app),
            Some("status"),
            "",
            200,
            None,
        );
        let mut tt = t + 0.1;
        for _ in 0..replicas {
            self.call(
                class,
                tt,
                &dc,
                "patch",
                rsr,
                Some(ns),
                Some(&rs),
                None,
                "",
                200,
                None,
            );
            self.pod_start(tt + 0.05, ns, "ReplicaSet", &rs, app, image, &rsc);
            self.call(
                class,
                tt,
                &rsc,
                "update",
                rsr,
                Some(ns),
                Some(&rs),
                Some("status"),
                "",
                200,
                None,
            );
            tt += self.rng.range(8.0, 20.0);
            let old = format!("{app}-{}-{}", self.rng.suffix(9), self.rng.suffix(5));
            let node = self.rng.pick(&WORKERS).to_string();
            self.pod_stop(tt, ns, &old, &node, Some(&rsc));
            self.call(
                class,
                tt + 3.0,
                &dc,
                "update",
                res("apps/v1 deployments"),
                Some(ns),
                Some(app),
                Some("status"),
                "",
                200,
                None,
            );
        }
    }

    /// Jobs from a CronJob every 15 minutes, cleaned up by the TTL controller; and a
    /// review namespace created by CI and deleted, emptied by the namespace controller.
    fn workload_controllers(&mut self) {
        let class = "workload churn";
        let cj = Who::controller("cronjob-controller");
        let jc = Who::controller("job-controller");
        let ttl = Who::controller("ttl-after-finished-controller");
        let gc = Who::controller("generic-garbage-collector");
        let jobs = res("batch/v1 jobs");
        let mut t = 60.0;
        while t < WINDOW_S {
            let job = format!("report-export-{}", 29_000_000 + (t as u64) / 60);
            self.call(
                class,
                t,
                &cj,
                "create",
                jobs,
                Some("data"),
                Some(&job),
                None,
                "",
                201,
                Some(json!({"kind": "Job", "apiVersion": "batch/v1"})),
            );
            self.call(
                class,
                t + 0.02,
                &cj,
                "update",
                res("batch/v1 cronjobs"),
                Some("data"),
                Some("report-export"),
                Some("status"),
                "",
                200,
                None,
            );
            let (pod, node) = self.pod_start(
                t + 0.1,
                "data",
                "Job",
                &job,
                "report-export",
                "registry.example.com/data/report-export:2.3.0",
                &jc,
            );
            let done = t + self.rng.range(40.0, 120.0);
            self.call(
                class,
                done,
                &jc,
                "update",
                jobs,
                Some("data"),
                Some(&job),
                Some("status"),
                "",
                200,
                None,
            );
            self.call(
                class,
                done + 0.1,
                &jc,
                "patch",
                res("v1 pods"),
                Some("data"),
                Some(&pod),
                None,
                "",
                200,
                None,
            );
            // ttlSecondsAfterFinished: 600
            self.call(
                class,
                done + 600.0,
                &ttl,
                "delete",
                jobs,
                Some("data"),
                Some(&job),
                None,
                "",
                200,
                None,
            );
            self.call(
                class,
                done + 600.5,
                &gc,
                "delete",
                res("v1 pods"),
                Some("data"),
                Some(&pod),
                None,
                "",
                200,
                None,
            );
            self.pod_stop(done + 600.6, "data", &pod, &node, None);
            t += 900.0;
        }

        // The namespace controller empties the review namespace CI deletes (see `ci_deploys`).
        let nsc = Who::controller("namespace-controller");
        let t = REVIEW_NS_DELETED + 0.5;
        let ns = "review-pr-1234";
        let mut tt = t;
        for spec in [
            "v1 pods",
            "v1 services",
            "v1 configmaps",
            "v1 secrets",
            "v1 serviceaccounts",
            "v1 events",
            "apps/v1 deployments",
            "apps/v1 replicasets",
            "discovery.k8s.io/v1 endpointslices",
            "rbac.authorization.k8s.io/v1 rolebindings",
            "events.k8s.io/v1 events",
        ] {
            self.call(
                class,
                tt,
                &nsc,
                "list",
                res(spec),
                Some(ns),
                None,
                None,
                "",
                200,
                None,
            );
            self.call(
                class,
                tt + 0.01,
                &nsc,
                "deletecollection",
                res(spec),
                Some(ns),
                None,
                None,
                "",
                200,
                None,
            );
            tt += 0.05;
        }
        self.call(
            class,
            tt,
            &nsc,
            "update",
            res("v1 namespaces"),
            None,
            Some(ns),
            Some("finalize"),
            "",
            200,
            None,
        );
        self.call(
            class,
            tt + 0.02,
            &nsc,
            "delete",
            res("v1 namespaces"),
            None,
            Some(ns),
            None,
            "",
            200,
            None,
        );
    }

    /// `helm install`, `helm upgrade` (rev > 1) or `helm uninstall` of one release.
    #[allow(clippy::too_many_arguments)]
    fn helm(
        &mut self,
        t: f64,
        who: &Who,
        release: &str,
        ns: &str,
        rev: u32,
        image: &str,
        uid: u32,
        uninstall: bool,
    ) {
        let class = "helm";
        let secrets = res("v1 secrets");
        let deps = res("apps/v1 deployments");
        self.discovery(class, t, who);
        let sel = format!(
            "labelSelector={}",
            enc(&format!("owner=helm,name={release}"))
        );
        let mut t = t + 0.3;
        self.call(
            class,
            t,
            who,
            "list",
            secrets,
            Some(ns),
            None,
            None,
            &sel,
            200,
            None,
        );
        let resources: [(&str, &str); 6] = [
            ("v1 serviceaccounts", release),
            ("v1 configmaps", "-config"),
            ("rbac.authorization.k8s.io/v1 roles", release),
            ("rbac.authorization.k8s.io/v1 rolebindings", release),
            ("v1 services", release),
            ("apps/v1 deployments", release),
        ];
        let name_of = |r: &str| {
            if r.starts_with('-') {
                format!("{release}{r}")
            } else {
                r.to_string()
            }
        };
        if uninstall {
            self.mix.helm_uninstalls += 1;
            t += 0.2;
            for (spec, n) in resources.iter().rev() {
                self.call(
                    class,
                    t,
                    who,
                    "delete",
                    res(spec),
                    Some(ns),
                    Some(&name_of(n)),
                    None,
                    "",
                    200,
                    None,
                );
                t += 0.05;
            }
            for r in 1..=rev {
                let n = format!("sh.helm.release.v1.{release}.v{r}");
                self.call(
                    class,
                    t,
                    who,
                    "delete",
                    secrets,
                    Some(ns),
                    Some(&n),
                    None,
                    "",
                    200,
                    None,
                );
                t += 0.03;
            }
            return;
        }
        let new = format!("sh.helm.release.v1.{release}.v{rev}");
        if rev == 1 {
            self.mix.helm_installs += 1;
            let q = format!(
                "labelSelector={}",
                enc(&format!("name={release},owner=helm,status=deployed"))
            );
            self.call(
                class,
                t + 0.05,
                who,
                "list",
                secrets,
                Some(ns),
                None,
                None,
                &q,
                200,
                None,
            );
            self.call(
                class,
                t + 0.1,
                who,
                "create",
                secrets,
                Some(ns),
                Some(&new),
                None,
                "",
                201,
                None,
            );
            // pre-install hook: a migration Job, watched until it completes, then deleted.
            let job = format!("{release}-db-migrate");
            let jobs = res("batch/v1 jobs");
            let jbody = json!({"kind": "Job", "apiVersion": "batch/v1", "metadata": {"name": job, "namespace": ns,
                "annotations": {"helm.sh/hook": "pre-install,pre-upgrade", "helm.sh/hook-delete-policy": "before-hook-creation,hook-succeeded"}},
                "spec": {"backoffLimit": 1, "template": Self::pod_body(ns, "Job", &job, release, image, uid)}});
            self.call(
                class,
                t + 0.3,
                who,
                "create",
                jobs,
                Some(ns),
                Some(&job),
                None,
                "",
                201,
                Some(jbody),
            );
            let jc = Who::controller("job-controller");
            let (pod, node) = self.pod_start(t + 0.4, ns, "Job", &job, release, image, &jc);
            let dur = self.rng.range(15.0, 40.0);
            let q = format!(
                "fieldSelector={}&watch=true",
                enc(&format!("metadata.name={job}"))
            );
            let w = Call {
                class,
                t: t + 0.35,
                who,
                verb: "watch",
                uri: format!("{}?{q}", jobs.path(Some(ns), None, None)),
                oref: Some(jobs.object_ref(Some(ns), None, None)),
                code: 200,
                body: None,
            };
            self.emit_long(w, dur);
            t += dur + 0.5;
            self.call(
                class,
                t - 0.4,
                &jc,
                "update",
                jobs,
                Some(ns),
                Some(&job),
                Some("status"),
                "",
                200,
                None,
            );
            self.call(
                class,
                t,
                who,
                "delete",
                jobs,
                Some(ns),
                Some(&job),
                None,
                "",
                200,
                None,
            );
            let gc = Who::controller("generic-garbage-collector");
            self.call(
                class,
                t + 0.2,
                &gc,
                "delete",
                res("v1 pods"),
                Some(ns),
                Some(&pod),
                None,
                "",
                200,
                None,
            );
            self.pod_stop(t + 0.3, ns, &pod, &node, None);
            for (spec, n) in resources.iter() {
                let n = name_of(n);
                let body = if *spec == "apps/v1 deployments" {
                    Self::deployment_body(ns, release, image, 2, uid)
                } else {
                    let kind = res(spec).plural.trim_end_matches('s').to_string();
                    json!({"kind": kind, "metadata": {"name": n, "namespace": ns, "labels": {"app.kubernetes.io/managed-by": "Helm"}}})
                };
                self.call(
                    class,
                    t,
                    who,
                    "create",
                    res(spec),
                    Some(ns),
                    Some(&n),
                    None,
                    "",
                    201,
                    Some(body),
                );
                t += 0.04;
            }
            self.call(
                class,
                t,
                who,
                "update",
                secrets,
                Some(ns),
                Some(&new),
                None,
                "",
                200,
                None,
            );
            self.rollout_new(t + 0.2, ns, release, image, 2);
        } else {
            self.mix.helm_upgrades += 1;
            let q = format!(
                "labelSelector={}",
                enc(&format!("name={release},owner=helm,status=deployed"))
            );
            self.call(
                class,
                t + 0.05,
                who,
                "list",
                secrets,
                Some(ns),
                None,
                None,
                &q,
                200,
                None,
            );
            let prev = format!("sh.helm.release.v1.{release}.v{}", rev - 1);
            self.call(
                class,
                t + 0.1,
                who,
                "get",
                secrets,
                Some(ns),
                Some(&prev),
                None,
                "",
                200,
                None,
            );
            self.call(
                class,
                t + 0.2,
                who,
                "create",
                secrets,
                Some(ns),
                Some(&new),
                None,
                "",
                201,
                None,
            );
            t += 0.3;
            for (spec, n) in resources.iter() {
                let n = name_of(n);
                self.call(
                    class,
                    t,
                    who,
                    "get",
                    res(spec),
                    Some(ns),
                    Some(&n),
                    None,
                    "",
                    200,
                    None,
                );
                if *spec == "apps/v1 deployments" {
                    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": release, "image": image}]}}}});
                    self.call(
                        class,
                        t + 0.02,
                        who,
                        "patch",
                        deps,
                        Some(ns),
                        Some(&n),
                        None,
                        "",
                        200,
                        Some(patch),
                    );
                } else if *spec == "v1 configmaps" {
                    let patch = json!({"data": {"LOG_LEVEL": "info"}});
                    self.call(
                        class,
                        t + 0.02,
                        who,
                        "patch",
                        res(spec),
                        Some(ns),
                        Some(&n),
                        None,
                        "",
                        200,
                        Some(patch),
                    );
                }
                t += 0.04;
            }
            self.call(
                class,
                t,
                who,
                "update",
                secrets,
                Some(ns),
                Some(&prev),
                None,
                "",
                200,
                None,
            );
            self.call(
                class,
                t + 0.02,
                who,
                "update",
                secrets,
                Some(ns),
                Some(&new),
                None,
                "",
                200,
                None,
            );
            self.rollout(t + 0.2, ns, release, image, 2);
        }
    }

    /// The first rollout of a new Deployment (no old pods to stop).
    fn rollout_new(&mut self, t: f64, ns: &str, app: &str, image: &str, replicas: u32) {
        let class = "workload churn";
        let dc = Who::controller("deployment-controller");
        let rsc = Who::controller("replicaset-controller");
        let rs = format!("{app}-{}", self.rng.suffix(9));
        self.call(
            class,
            t,
            &dc,
            "create",
            res("apps/v1 replicasets"),
            Some(ns),
            Some(&rs),
            None,
            "",
            201,
            Some(json!({"kind": "ReplicaSet", "apiVersion": "apps/v1"})),
        );
        for i in 0..replicas {
            self.pod_start(
                t + 0.1 + i as f64 * 0.05,
                ns,
                "ReplicaSet",
                &rs,
                app,
                image,
                &rsc,
            );
        }
        self.call(
            class,
            t + 5.0,
            &dc,
            "update",
            res("apps/v1 deployments"),
            Some(ns),
            Some(app),
            Some("status"),
            "",
            200,
            None,
        );
    }

    fn helm_releases(&mut self) {
        let ci = Who::sa("ci", "deployer", HELM_UA, "10.20.4.31");
        let bob = Who::new(
            "bob@example.com",
            &["platform-admins", "system:authenticated"],
            HELM_UA,
            "10.8.0.23",
        );
        // A person installs a Redis for staging from a public chart, later uninstalls it.
        self.helm(
            900.0,
            &bob,
            "redis",
            "staging",
            1,
            "docker.io/bitnami/redis:7.2.4-debian-12-r9",
            1001,
            false,
        );
        // CI upgrades the shop API (our own image) several times, and Grafana once.
        for (rev, t) in (17..).zip([1500.0, 3300.0, 5100.0, 6600.0]) {
            let tag = format!("registry.example.com/shop/api:1.{}.0", 40 + rev);
            let at = t + self.rng.range(0.0, 60.0);
            self.helm(at, &ci, "shop-api", "shop", rev, &tag, 10001, false);
        }
        self.helm(
            2700.0,
            &ci,
            "grafana",
            "monitoring",
            6,
            "docker.io/grafana/grafana:10.4.1",
            472,
            false,
        );
        // A new team app installed by CI into staging.
        self.helm(
            4200.0,
            &ci,
            "loyalty",
            "staging",
            1,
            "registry.example.com/shop/loyalty:0.3.1",
            10001,
            false,
        );
        self.helm(6300.0, &bob, "redis", "staging", 1, "", 1001, true);
    }

    /// `kubectl apply` then `kubectl rollout status` from the CI runner.
    fn ci_deploys(&mut self) {
        let class = "ci";
        let runner = Who::sa("ci", "deployer", KUBECTL_LINUX, "10.20.4.31");
        let deps = res("apps/v1 deployments");
        let cms = res("v1 configmaps");
        let mut t = 300.0;
        let mut build = 812;
        while t < WINDOW_S {
            for (ns, app) in [
                ("staging", "frontend"),
                ("staging", "cart"),
                ("shop", "frontend"),
                ("shop", "checkout"),
            ] {
                if !self.rng.chance(0.45) {
                    continue;
                }
                self.mix.ci_deploys += 1;
                build += 1;
                let image = format!("registry.example.com/shop/{app}:1.9.{build}");
                let t0 = t + self.rng.range(0.0, 300.0);
                self.discovery(class, t0, &runner);
                let cm = format!("{app}-config");
                self.call(
                    class,
                    t0 + 0.2,
                    &runner,
                    "get",
                    cms,
                    Some(ns),
                    Some(&cm),
                    None,
                    "",
                    200,
                    None,
                );
                let patch = json!({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"}},
                    "data": {"RELEASE": format!("1.9.{build}")}});
                self.call(
                    class,
                    t0 + 0.25,
                    &runner,
                    "patch",
                    cms,
                    Some(ns),
                    Some(&cm),
                    None,
                    "fieldManager=kubectl-client-side-apply&fieldValidation=Strict",
                    200,
                    Some(patch),
                );
                self.call(
                    class,
                    t0 + 0.3,
                    &runner,
                    "get",
                    deps,
                    Some(ns),
                    Some(app),
                    None,
                    "",
                    200,
                    None,
                );
                let patch = json!({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"}},
                    "spec": {"template": {"spec": {"containers": [{"name": app, "image": image}]}}}});
                self.call(
                    class,
                    t0 + 0.35,
                    &runner,
                    "patch",
                    deps,
                    Some(ns),
                    Some(app),
                    None,
                    "fieldManager=kubectl-client-side-apply&fieldValidation=Strict",
                    200,
                    Some(patch),
                );
                let replicas = if ns == "shop" { 3 } else { 1 };
                self.rollout(t0 + 0.5, ns, app, &image, replicas);
                // kubectl rollout status: get, then watch the one Deployment until it is done.
                self.call(
                    class,
                    t0 + 0.6,
                    &runner,
                    "get",
                    deps,
                    Some(ns),
                    Some(app),
                    None,
                    "",
                    200,
                    None,
                );
                let q = format!(
                    "fieldSelector={}&resourceVersion={}&watch=true",
                    enc(&format!("metadata.name={app}")),
                    self.next_rv()
                );
                let w = Call {
                    class,
                    t: t0 + 0.65,
                    who: &runner,
                    verb: "watch",
                    uri: format!("{}?{q}", deps.path(Some(ns), None, None)),
                    oref: Some(deps.object_ref(Some(ns), None, None)),
                    code: 200,
                    body: None,
                };
                self.emit_long(w, 20.0 * replicas as f64);
            }
            t += 900.0;
        }
        // A review environment for a merge request: namespace created, later deleted.
        let nsr = res("v1 namespaces");
        self.call(
            class,
            3000.0,
            &runner,
            "create",
            nsr,
            None,
            Some("review-pr-1234"),
            None,
            "",
            201,
            Some(json!({"kind": "Namespace"})),
        );
        self.call(
            class,
            REVIEW_NS_DELETED,
            &runner,
            "delete",
            nsr,
            None,
            Some("review-pr-1234"),
            None,
            "",
            200,
            None,
        );
    }

    fn administrators(&mut self) {
        let class = "administrators";
        let admins = [
            Who::new(
                "alice@example.com",
                &["platform-admins", "system:authenticated"],
                KUBECTL_MAC,
                "10.8.0.14",
            ),
            Who::new(
                "bob@example.com",
                &["platform-admins", "system:authenticated"],
                KUBECTL_LINUX,
                "10.8.0.23",
            ),
            Who::new(
                "carol@example.com",
                &["shop-developers", "system:authenticated"],
                KUBECTL_MAC,
                "10.8.0.41",
            ),
            Who::new(
                "dave@example.com",
                &["shop-developers", "system:authenticated"],
                KUBECTL_MAC,
                "10.8.0.57",
            ),
        ];
        let pods = res("v1 pods");
        let deps = res("apps/v1 deployments");
        let mut t = self.rng.range(0.0, 120.0);
        let mut execs = 0;
        let mut forwards = 0;
        while t < WINDOW_S {
            let who = self.rng.pick(&admins).clone();
            let dev = who.groups[0] == "shop-developers";
            let ns = if dev {
                *self.rng.pick(&["shop", "staging"])
            } else {
                *self.rng.pick(&[
                    "shop",
                    "staging",
                    "monitoring",
                    "ingress-nginx",
                    "kube-system",
                    "argocd",
                    "data",
                ])
            };
            self.mix.admin_sessions += 1;
            let mut tt = t;
            if self.rng.chance(0.3) {
                self.discovery(class, tt, &who);
                tt += 0.3;
            }
            let n = 2 + self.rng.below(8);
            for _ in 0..n {
                let app = *self.rng.pick(&["frontend", "cart", "checkout"]);
                let pod = format!("{app}-{}-{}", self.rng.suffix(9), self.rng.suffix(5));
                match self.rng.below(100) {
                    0..=29 => self.call(
                        class,
                        tt,
                        &who,
                        "list",
                        pods,
                        Some(ns),
                        None,
                        None,
                        "limit=500",
                        200,
                        None,
                    ),
                    30..=39 => self.call(
                        class,
                        tt,
                        &who,
                        "list",
                        deps,
                        Some(ns),
                        None,
                        None,
                        "limit=500",
                        200,
                        None,
                    ),
                    40..=49 => {
                        // kubectl describe pod
                        self.call(
                            class,
                            tt,
                            &who,
                            "get",
                            pods,
                            Some(ns),
                            Some(&pod),
                            None,
                            "",
                            200,
                            None,
                        );
                        let q = format!(
                            "fieldSelector={}&limit=500",
                            enc(&format!(
                                "involvedObject.name={pod},involvedObject.namespace={ns}"
                            ))
                        );
                        self.call(
                            class,
                            tt + 0.05,
                            &who,
                            "list",
                            res("v1 events"),
                            Some(ns),
                            None,
                            None,
                            &q,
                            200,
                            None,
                        );
                    }
                    50..=61 => {
                        self.call(
                            class,
                            tt,
                            &who,
                            "get",
                            pods,
                            Some(ns),
                            Some(&pod),
                            None,
                            "",
                            200,
                            None,
                        );
                        self.call(
                            class,
                            tt + 0.05,
                            &who,
                            "get",
                            pods,
                            Some(ns),
                            Some(&pod),
                            Some("log"),
                            "container=app&tailLines=200",
                            200,
                            None,
                        );
                    }
                    62..=67 => self.call(
                        class,
                        tt,
                        &who,
                        "list",
                        res("v1 events"),
                        Some(ns),
                        None,
                        None,
                        "limit=500",
                        200,
                        None,
                    ),
                    68..=73 => {
                        self.discovery(class, tt, &who);
                        self.call(
                            class,
                            tt + 0.1,
                            &who,
                            "list",
                            res("metrics.k8s.io/v1beta1 pods"),
                            Some(ns),
                            None,
                            None,
                            "",
                            200,
                            None,
                        );
                    }
                    74..=76 => self.call(
                        class,
                        tt,
                        &who,
                        "list",
                        res("metrics.k8s.io/v1beta1 nodes"),
                        None,
                        None,
                        None,
                        "",
                        200,
                        None,
                    ),
                    77..=79 => self.call(
                        class,
                        tt,
                        &who,
                        "list",
                        res("v1 nodes"),
                        None,
                        None,
                        None,
                        "limit=500",
                        200,
                        None,
                    ),
                    80..=83 => {
                        // kubectl rollout restart
                        self.call(
                            class,
                            tt,
                            &who,
                            "get",
                            deps,
                            Some(ns),
                            Some(app),
                            None,
                            "",
                            200,
                            None,
                        );
                        let body = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": ts(tt)}}}}});
                        self.call(
                            class,
                            tt + 0.05,
                            &who,
                            "patch",
                            deps,
                            Some(ns),
                            Some(app),
                            None,
                            "fieldManager=kubectl-rollout",
                            200,
                            Some(body),
                        );
                    }
                    84..=86 => {
                        // kubectl scale
                        let body = json!({"spec": {"replicas": 1 + self.rng.below(4)}});
                        self.call(
                            class,
                            tt,
                            &who,
                            "patch",
                            deps,
                            Some(ns),
                            Some(app),
                            Some("scale"),
                            "fieldManager=kubectl-scale",
                            200,
                            Some(body),
                        );
                    }
                    87..=89 => {
                        // kubectl auth can-i
                        let body = json!({"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                            "spec": {"resourceAttributes": {"namespace": ns, "verb": "patch", "group": "apps", "resource": "deployments"}}});
                        self.call(
                            class,
                            tt,
                            &who,
                            "create",
                            res("authorization.k8s.io/v1 selfsubjectaccessreviews"),
                            None,
                            None,
                            None,
                            "",
                            201,
                            Some(body),
                        );
                    }
                    90..=92 if forwards < 4 && ns != "kube-system" => {
                        forwards += 1;
                        self.mix.port_forwards += 1;
                        self.call(
                            class,
                            tt,
                            &who,
                            "get",
                            pods,
                            Some(ns),
                            Some(&pod),
                            None,
                            "",
                            200,
                            None,
                        );
                        let c = Call {
                            class,
                            t: tt + 0.05,
                            who: &who,
                            verb: "create",
                            uri: pods.path(Some(ns), Some(&pod), Some("portforward")),
                            oref: Some(pods.object_ref(Some(ns), Some(&pod), Some("portforward"))),
                            code: 101,
                            body: None,
                        };
                        let dur = self.rng.range(60.0, 900.0);
                        self.emit_long(c, dur);
                    }
                    93..=94 if execs < 5 && ns == "staging" => {
                        execs += 1;
                        self.mix.admin_execs += 1;
                        self.call(
                            class,
                            tt,
                            &who,
                            "get",
                            pods,
                            Some(ns),
                            Some(&pod),
                            None,
                            "",
                            200,
                            None,
                        );
                        let sub = "exec";
                        let c = Call {
                            class,
                            t: tt + 0.05,
                            who: &who,
                            verb: "create",
                            uri: format!(
                                "{}?command=sh&container={app}&stdin=true&stdout=true&tty=true",
                                pods.path(Some(ns), Some(&pod), Some(sub))
                            ),
                            oref: Some(pods.object_ref(Some(ns), Some(&pod), Some(sub))),
                            code: 101,
                            body: None,
                        };
                        let dur = self.rng.range(30.0, 600.0);
                        self.emit_long(c, dur);
                    }
                    _ => self.call(
                        class,
                        tt,
                        &who,
                        "get",
                        deps,
                        Some(ns),
                        Some(app),
                        None,
                        "",
                        200,
                        None,
                    ),
                }
                tt += self.rng.range(2.0, 40.0);
            }
            t += self.rng.range(20.0, 160.0);
        }
    }
}

/// RFC 3339 with microseconds; event time 0 is 2026-11-30T09:00:00Z.
fn ts(t: f64) -> String {
    let us = (t.max(0.0) * 1e6) as u64;
    let s = us / 1_000_000;
    format!(
        "2026-11-30T{:02}:{:02}:{:02}.{:06}Z",
        9 + s / 3600,
        (s / 60) % 60,
        s % 60,
        us % 1_000_000
    )
}
