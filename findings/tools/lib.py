import json, subprocess, sys, os, uuid
BIN = os.environ.get("PXG", "/work/wt-review/.build/debug/pxguard")
GVR = {
 "Pod": ("", "v1", "pods"), "Deployment": ("apps","v1","deployments"), "ReplicaSet": ("apps","v1","replicasets"),
 "StatefulSet": ("apps","v1","statefulsets"), "DaemonSet": ("apps","v1","daemonsets"), "Job": ("batch","v1","jobs"),
 "CronJob": ("batch","v1","cronjobs"), "ReplicationController": ("","v1","replicationcontrollers"),
 "PodTemplate": ("","v1","podtemplates"), "NetworkPolicy": ("networking.k8s.io","v1","networkpolicies"),
 "Namespace": ("","v1","namespaces"), "Service": ("","v1","services"),
}
def review(kind, op, obj=None, old=None, ns="team-a", name=None, user="alice", groups=("system:authenticated",),
           sub=None, dry=False, version="admission.k8s.io/v1", gvk=None):
    g, v, r = GVR[kind] if gvk is None else gvk
    if name is None:
        name = ((obj or old or {}).get("metadata") or {}).get("name", "x")
    req = {"uid": str(uuid.uuid4()), "kind": {"group": g, "version": v, "kind": kind},
           "resource": {"group": g, "version": v, "resource": r},
           "requestKind": {"group": g, "version": v, "kind": kind},
           "requestResource": {"group": g, "version": v, "resource": r},
           "name": name, "namespace": ns, "operation": op,
           "userInfo": {"username": user, "groups": list(groups)},
           "object": obj, "oldObject": old, "dryRun": dry,
           "options": {"kind": {"CREATE":"CreateOptions","UPDATE":"UpdateOptions","DELETE":"DeleteOptions"}.get(op,"CreateOptions"), "apiVersion": "meta.k8s.io/v1"}}
    if sub: req["subResource"] = sub; req["requestSubResource"] = sub
    if kind == "Namespace": req["namespace"] = name
    return {"kind": "AdmissionReview", "apiVersion": version, "request": req}
def run(rv, mutate=False, config=None, raw=None, save=None):
    data = raw if raw is not None else json.dumps(rv)
    if save:
        os.makedirs("/work/wt-review/findings", exist_ok=True)
        open(f"/work/wt-review/findings/{save}.json","w").write(data if raw is not None else json.dumps(rv, indent=1))
    args = [BIN, "review"] + (["--config", config] if config else []) + (["--mutate"] if mutate else []) + ["-"]
    p = subprocess.run(args, input=data.encode(), capture_output=True)
    try:
        out = json.loads(p.stdout)
    except Exception:
        return {"rc": p.returncode, "stdout": p.stdout[:300], "stderr": p.stderr[:300]}
    return out["response"]
def short(resp):
    if "allowed" not in resp: return resp
    s = "ALLOW" if resp["allowed"] else "DENY"
    m = (resp.get("status") or {}).get("message", "")
    w = resp.get("warnings")
    a = resp.get("auditAnnotations")
    return f"{s} {m[:160]} {'W:'+str(w)[:200] if w else ''} {a or ''}"
def np(name, spec, ns="team-a", labels=None, **meta):
    m = {"name": name, "namespace": ns, "uid": "11111111-2222-3333-4444-555555555555", "resourceVersion": "100",
         "creationTimestamp": "2026-01-01T00:00:00Z"}
    if labels is not None: m["labels"] = labels
    m.update(meta)
    return {"kind": "NetworkPolicy", "apiVersion": "networking.k8s.io/v1", "metadata": m, "spec": spec}
