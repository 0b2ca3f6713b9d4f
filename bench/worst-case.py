#!/usr/bin/env python3
"""Writes the worst-case AdmissionReviews for `make bench` into DIR (default
bench/out/worst): a 40,000-except NetworkPolicy (about 1 MB) and a 3 MiB review of
each kind the rules read (Pod, Deployment, NetworkPolicy by rules and by ports, a
spec-preserving NetworkPolicy UPDATE, a guard-policy UPDATE, a Namespace UPDATE,
Service CREATE and UPDATE), plus an 8 MiB guard-policy UPDATE for the memory check.
Each is shaped so that the rules must read all of it. Deterministic (seeded)."""
import json, os, random, sys

out = sys.argv[1] if len(sys.argv) > 1 else "bench/out/worst"
os.makedirs(out, exist_ok=True)
MIB = 1 << 20
rng = random.Random(12)


def review(kind, group, resource, name, ns, op, obj, old=None, user="alice@example.com"):
    return {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "b0b0b0b0-0000-4000-8000-%012d" % rng.randrange(10**12),
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "name": name, "namespace": ns, "operation": op,
            "userInfo": {"username": user, "groups": ["devs", "system:authenticated"]},
            "object": obj, "oldObject": old, "dryRun": False,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions" if op == "CREATE" else "UpdateOptions"},
        },
    }


def write(name, doc):
    data = json.dumps(doc, separators=(",", ":")).encode()
    with open(os.path.join(out, name + ".json"), "wb") as f:
        f.write(data)
    print(f"{name + '.json':28s} {len(data):>9,d} bytes")


def fit(make, target=3 * MIB - 4096):
    """make(n) for the largest n (found by scaling a probe) whose review stays under target bytes."""
    size = lambda n: len(json.dumps(make(n), separators=(",", ":")))
    base, probe = size(0), size(1000)
    n = int((target - base) * 1000 / (probe - base))
    while size(n) > target:
        n = int(n * 0.995)
    return make(n)


def netpol(name, spec, ns="shop", labels=None):
    meta = {"name": name, "namespace": ns, "uid": "c1c1c1c1-0000-4000-8000-000000000001", "resourceVersion": "1"}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta, "spec": spec}


def egress(rules):
    return {"podSelector": {}, "policyTypes": ["Egress"], "egress": rules}


# 1. 40,000 excepts inside the node subnet, shuffled, one address left: every block
#    is kept, sorted and swept, and the answer is a denial naming 70.0.77.7/32.
#    Written in IPv4-mapped IPv6 form, the slowest to parse (about 1 MB).
addrs = [i for i in range(40001) if i != 19719]
rng.shuffle(addrs)
mapped = ["::ffff:70.0.%d.%d/128" % (i >> 8, i & 255) for i in addrs]
spec = egress([{"to": [{"ipBlock": {"cidr": "::ffff:70.0.0.0/112", "except": mapped + ["::ffff:70.0.156.0/118", "::ffff:70.0.160.0/115", "::ffff:70.0.192.0/114"]}}],
                "ports": [{"protocol": "TCP", "port": 9001}]}])
write("netpol-40k-except", review("NetworkPolicy", "networking.k8s.io", "networkpolicies", "many-excepts", "shop", "CREATE", netpol("many-excepts", spec)))
plain = ["70.0.%d.%d/32" % (i >> 8, i & 255) for i in addrs]
spec = egress([{"to": [{"ipBlock": {"cidr": "70.0.0.0/16", "except": plain + ["70.0.156.0/22", "70.0.160.0/19", "70.0.192.0/18"]}}],
                "ports": [{"protocol": "TCP", "port": 9001}]}])
write("netpol-40k-except-v4", review("NetworkPolicy", "networking.k8s.io", "networkpolicies", "many-excepts", "shop", "CREATE", netpol("many-excepts", spec)))

# 2. Pod and Deployment of 3 MiB (env vars), hostNetwork false at the end.
def env(n):
    return [{"name": "VAR_%06d" % i, "value": "x" * 40} for i in range(n)]

def pod(n):
    p = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big", "namespace": "shop"},
         "spec": {"containers": [{"name": "c", "image": "busybox", "env": env(n)}], "hostNetwork": False}}
    return review("Pod", "", "pods", "big", "shop", "CREATE", p)

def deployment(n):
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "big", "namespace": "shop"},
         "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "big"}},
                  "template": {"metadata": {"labels": {"app": "big"}},
                               "spec": {"containers": [{"name": "c", "image": "busybox", "env": env(n)}], "hostNetwork": False}}}}
    return review("Deployment", "apps", "deployments", "big", "shop", "CREATE", d)

write("pod-3m", fit(pod))
write("deployment-3m", fit(deployment))

# 3. NetworkPolicy of 3 MiB: every rule passes the port check and meets the node
#    subnet, and its except list covers it, so every rule is analysed to the end.
rule = {"to": [{"ipBlock": {"cidr": "70.0.0.0/16", "except": ["70.0.128.0/17", "70.0.0.0/17"]}}],
        "ports": [{"protocol": "TCP", "port": 9000, "endPort": 9100}]}
write("netpol-3m-rules", fit(lambda n: review("NetworkPolicy", "networking.k8s.io", "networkpolicies", "many-rules", "shop",
                                               "CREATE", netpol("many-rules", egress([rule] * n)))))
def many_ports(n, leave=False):
    ports = [{"protocol": "TCP", "port": 9001 + i % 22} for i in range(n)]
    except_ = ["70.0.0.0/17"] if leave else ["70.0.0.0/16"]
    spec = egress([{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": except_}}], "ports": ports}])
    return review("NetworkPolicy", "networking.k8s.io", "networkpolicies", "many-ports", "shop", "CREATE", netpol("many-ports", spec))
write("netpol-3m-ports", fit(many_ports))
# The same rule leaving half the node subnet open: denied, every port entry read for the message.
write("netpol-3m-ports-denied", fit(lambda n: many_ports(n, leave=True)))

# 4. An UPDATE of a permissive policy from before pxguard that keeps its spec
#    (1.5 MiB each side): compared token by token, then allowed.
def same_spec(n):
    half = egress([{"ports": [{"protocol": "TCP", "port": 9001 + i % 22}]} for i in range(n)])
    old = netpol("legacy", half)
    old["metadata"]["finalizers"] = ["example.com/cleanup"]
    return review("NetworkPolicy", "networking.k8s.io", "networkpolicies", "legacy", "shop", "UPDATE", netpol("legacy", half), old)
write("netpol-3m-update-same-spec", fit(same_spec))

# 5. A guard-policy UPDATE whose spec is canonical once empty members are dropped:
#    the in-place comparison walks all of it. 3 MiB, and 8 MiB for the memory check.
def guard_update(n):
    spec = {"podSelector": {}, "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "70.0.0.0/16"}}], "ports": [{"protocol": "TCP", "port": 6443}]}]}
    for i in range(n):
        spec["x%07d" % i] = None
    labels = {"app.kubernetes.io/managed-by": "pxguard"}
    return review("NetworkPolicy", "networking.k8s.io", "networkpolicies", "allow-api", "shop", "UPDATE",
                  netpol("allow-api", spec, labels=labels), netpol("allow-api", spec, labels=labels))

write("guard-3m-update", fit(guard_update))
write("guard-8m-update", fit(guard_update, 8 * MIB - 64 * 1024))

# 6. A Namespace UPDATE with 1.5 MiB of labels on each side (R5 reads two of them).
def namespace(n):
    labels = {"example.com/label-%06d" % i: "v" for i in range(n)}
    labels.update({"pxguard.io/guarded": "true", "pod-security.kubernetes.io/enforce": "baseline"})
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": labels}}
    return review("Namespace", "", "namespaces", "shop", "", "UPDATE", ns, ns)
write("namespace-3m-update", fit(namespace))

# 7. Services: 3 MiB of external IPs outside the node subnets (CREATE), and an
#    UPDATE whose node addresses were all held before (sorted, then searched).
def service(ips):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext", "namespace": "shop"},
            "spec": {"type": "ClusterIP", "ports": [{"port": 80}], "externalIPs": ips}}

write("service-3m-create", fit(lambda n: review("Service", "", "services", "ext", "shop", "CREATE",
    service(["10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255) for i in range(n)]))))
def held(n):
    inside = ["70.0.%d.%d" % (i >> 8 & 255, i & 255) for i in range(n)]  # repeats past 65,536
    random.Random(n).shuffle(inside)
    return review("Service", "", "services", "ext", "shop", "UPDATE", service(inside), service(list(reversed(inside))))
write("service-3m-update", fit(held))

# 8. Issue 23's rules. R8: 3 MiB of Endpoints addresses and of EndpointSlice
#    endpoints, none on a node, behind a protected port (every address is read).
def endpoints(n):
    ips = [{"ip": "10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255)} for i in range(n)]
    obj = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "ep", "namespace": "shop"},
           "subsets": [{"addresses": ips, "ports": [{"port": 9001, "protocol": "TCP"}]}]}
    return review("Endpoints", "", "endpoints", "ep", "shop", "CREATE", obj)
write("endpoints-3m-create", fit(endpoints))

def slice_(n):
    eps = [{"addresses": ["10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255)], "conditions": {"ready": True}} for i in range(n)]
    obj = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "ep-x", "namespace": "shop"},
           "addressType": "IPv4", "endpoints": eps, "ports": [{"port": None}]}
    return review("EndpointSlice", "discovery.k8s.io", "endpointslices", "ep-x", "shop", "CREATE", obj)
write("endpointslice-3m-create", fit(slice_))

# R7: a Service UPDATE whose protected nodePorts were all held before (1.5 MiB each side).
def node_ports(n):
    ports = [{"name": "p%d" % i, "protocol": "TCP", "port": 10000 + i % 50000, "nodePort": 9001 + i % 22} for i in range(n)]
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "np", "namespace": "shop"},
           "spec": {"type": "NodePort", "ports": ports}}
    return review("Service", "", "services", "np", "shop", "UPDATE", svc, svc)
write("service-3m-nodeports-update", fit(node_ports))

# R1: a legacy host-network Deployment UPDATE that keeps its pod template (1.5 MiB each side).
def legacy(n):
    d = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "legacy", "namespace": "shop"},
         "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "legacy"}},
                  "template": {"metadata": {"labels": {"app": "legacy"}},
                               "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "busybox", "env": env(n)}]}}}}
    old = json.loads(json.dumps(d))
    old["spec"]["replicas"] = 2
    return review("Deployment", "apps", "deployments", "legacy", "shop", "UPDATE", d, old)
write("deployment-3m-legacy-update", fit(legacy))

# 9. Repair mode (R4 `repair`, answered by /mutate): distinct offending rules, each
#    rewritten into two (0.7 MiB: the whole patch fits the budget of twice the spec),
#    and 3 MiB of them (the budget of 1.5 MiB is spent, the rest skipped over).
def distinct_rules(n):
    rules = [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.%d.%d.0/24" % (i >> 8 & 255, i & 255)]}}],
              "ports": [{"protocol": "TCP", "port": 8000 + i % 50, "endPort": 9100}]} for i in range(n)]
    return review("NetworkPolicy", "networking.k8s.io", "networkpolicies", "distinct", "shop", "CREATE",
                  netpol("distinct", egress(rules)))
write("netpol-700k-repaired", fit(distinct_rules, 700 * 1024))
write("netpol-3m-distinct-rules", fit(distinct_rules))
