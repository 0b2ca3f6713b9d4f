#!/usr/bin/env python3
"""Audit at scale: the real `pxguard serve` (release build) against a fake Kubernetes API
over HTTPS on loopback holding NAMESPACES guarded namespaces (labels, 4 KiB annotations,
both canonical guard policies each), POLICIES NetworkPolicies in all (the guard policies
plus tenant policies with 2 KiB annotations; one in a hundred a bypass of the protected
ports), SERVICES Services (4 KiB annotations; one in a hundred with an external IP in the
node subnet), as many Endpoints and EndpointSlices, and PODS Pods of which HOSTNET run on
the host network. The Pods collection answers only lists and watches that carry
`fieldSelector=spec.hostNetwork=true` (the script counts any other request). The Lease is
held by a live other replica: this one keeps the verdicts, as every replica does.

Prints the time from the process's start until /metrics says the audit is in sync with
every namespace judged and the expected number exposed, the RSS then, and the peak (VmHWM).
Usage: bench/audit-scale.py BINARY   (env NAMESPACES, POLICIES, SERVICES, PODS, HOSTNET, TIMEOUT)
Loopback only; bounded: gives up after TIMEOUT seconds (default 300).
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import yaml

from fakeapi import Collection, FakeAPI, PXGuard, value

NAMESPACES = int(os.environ.get("NAMESPACES", "2000"))
POLICIES = int(os.environ.get("POLICIES", "20000"))
SERVICES = int(os.environ.get("SERVICES", "10000"))
PODS = int(os.environ.get("PODS", "20000"))
HOSTNET = int(os.environ.get("HOSTNET", "20"))
TIMEOUT = float(os.environ.get("TIMEOUT", "300"))

unselected_pod_requests = []  # one entry per list or watch of Pods without the host-network field selector
BLOB4K = "n" * 4096
BLOB2K = "p" * 2048
GUARDS = []  # the two canonical guard policies, namespace "tmpl-ns" (filled in main)


def ns_name(i):
    return "team-%05d" % i


def namespace(i):
    name = ns_name(i)
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "uid": "ns-%d" % i, "resourceVersion": str(100 + i),
                         "labels": {"kubernetes.io/metadata.name": name, "pxguard.io/guarded": "true",
                                    "pod-security.kubernetes.io/enforce": "baseline"},
                         "annotations": {"pxguard.io/policies": "block-9001-for-non-system-users,allow-api",
                                         "example.com/blob": BLOB4K}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def policy(i):
    guards = 2 * NAMESPACES
    if i < guards:
        g = json.loads(json.dumps(GUARDS[i % 2]))
        g["metadata"]["namespace"] = ns_name(i // 2)
        g["metadata"]["uid"] = "g-%d" % i
        g["metadata"]["resourceVersion"] = str(200000 + i)
        return g
    ns = ns_name(i % NAMESPACES)
    bypass = i % 100 == 0
    spec = ({"podSelector": {}, "policyTypes": ["Egress"],
             "egress": [{"to": [{"ipBlock": {"cidr": "70.0.0.0/16"}}], "ports": [{"protocol": "TCP", "port": 9001}]}]}
            if bypass else
            {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
             "ingress": [{"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": 8080}]}]})
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "tenant-np-%06d" % i, "namespace": ns, "uid": "p-%d" % i, "resourceVersion": str(200000 + i),
                         "annotations": {"note": BLOB2K}},
            "spec": spec}


def service(i):
    ns = ns_name(i % NAMESPACES)
    spec = {"type": "ClusterIP", "clusterIP": "10.96.%d.%d" % (i // 250 % 250, i % 250 + 1),
            "ports": [{"protocol": "TCP", "port": 443, "targetPort": 8443}], "selector": {"app": "web"}}
    if i % 100 == 50:
        spec["externalIPs"] = ["70.0.3.%d" % (i % 250 + 1)]
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "svc-%06d" % i, "namespace": ns, "uid": "s-%d" % i, "resourceVersion": str(400000 + i),
                         "annotations": {"example.com/blob": BLOB4K}},
            "spec": spec}


def endpoints(i):
    ns = ns_name(i % NAMESPACES)
    return {"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "svc-%06d" % i, "namespace": ns, "uid": "e-%d" % i, "resourceVersion": str(600000 + i)},
            "subsets": [{"addresses": [{"ip": "10.244.%d.%d" % (i // 250 % 250, i % 250 + 1)}],
                         "ports": [{"port": 8443, "protocol": "TCP"}]}]}


def slice_(i):
    ns = ns_name(i % NAMESPACES)
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "svc-%06d-abcde" % i, "namespace": ns, "uid": "es-%d" % i, "resourceVersion": str(800000 + i)},
            "addressType": "IPv4", "endpoints": [{"addresses": ["10.244.%d.%d" % (i // 250 % 250, i % 250 + 1)]}],
            "ports": [{"port": 8443, "protocol": "TCP"}]}


def hostnet_pod(i):
    ns = ns_name(i * 7 % NAMESPACES)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "hostnet-%04d" % i, "namespace": ns, "uid": "hp-%d" % i, "resourceVersion": str(900000 + i)},
            "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "busybox"}]}, "status": {"phase": "Running"}}


def pod_count(query):
    """What a real API server would list: the host-network Pods with the field selector, every Pod
    without it (and the request is counted as a failure)."""
    if query.get("fieldSelector") == "spec.hostNetwork=true":
        return HOSTNET
    unselected_pod_requests.append(query)
    return PODS


CONFIG = """nodeCIDRs: [70.0.0.0/16]
guardBackend: networkpolicy
provisioning: {enabled: true, resyncSeconds: 3600}
audit: {enabled: true}
"""

COLLECTIONS = {
    "/api/v1/namespaces": Collection("namespaces", "NamespaceList", namespace, lambda q: NAMESPACES),
    "/apis/networking.k8s.io/v1/networkpolicies": Collection("networkpolicies", "NetworkPolicyList", policy,
                                                             lambda q: max(POLICIES, 2 * NAMESPACES)),
    "/api/v1/services": Collection("services", "ServiceList", service, lambda q: SERVICES),
    "/api/v1/endpoints": Collection("endpoints", "EndpointsList", endpoints, lambda q: SERVICES),
    "/apis/discovery.k8s.io/v1/endpointslices": Collection("endpointslices", "EndpointSliceList", slice_, lambda q: SERVICES),
    "/api/v1/pods": Collection("pods", "PodList", hostnet_pod, pod_count),
}


def main():
    binary = sys.argv[1]
    rendered = subprocess.run([binary, "render", "policies", "--namespace", "tmpl-ns", "--nodes", "70.0.0.0/16"], check=True, capture_output=True, text=True)
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d and d.get("metadata", {}).get("namespace") == "tmpl-ns"]
    GUARDS.extend(sorted(docs, key=lambda d: d["metadata"]["name"]))
    assert len(GUARDS) == 2, "expected the two namespaced guard policies from render policies"
    work = tempfile.mkdtemp(prefix="pxguard-audit-scale-")
    api = FakeAPI(work, COLLECTIONS)
    pxguard = PXGuard(binary, work, api, CONFIG)
    process = pxguard.process

    # Exposed: a namespace holding a bypass policy, an external-IP Service or a host-network Pod.
    exposed = set()
    for i in range(2 * NAMESPACES, max(POLICIES, 2 * NAMESPACES)):
        if i % 100 == 0:
            exposed.add(i % NAMESPACES)
    for i in range(SERVICES):
        if i % 100 == 50:
            exposed.add(i % NAMESPACES)
    for i in range(HOSTNET):
        exposed.add(i * 7 % NAMESPACES)
    try:
        idle = process.status_kib("VmRSS")
        while True:
            if time.time() - pxguard.started > TIMEOUT:
                raise SystemExit("timed out after %.0f s" % TIMEOUT)
            text = pxguard.metrics()
            if (value(text, "pxguard_audit_synced") == 1 and value(text, "pxguard_audit_guarded_namespaces") == NAMESPACES
                    and value(text, "pxguard_audit_exposed_namespaces") == len(exposed)):
                break
            time.sleep(0.25)
        took = time.time() - pxguard.started
        rss = process.status_kib("VmRSS")
        time.sleep(2)
        settled = process.status_kib("VmRSS")
        peak = process.status_kib("VmHWM")
        print("namespaces %d (both guard policies each), NetworkPolicies %d, Services %d (4 KiB annotations), Endpoints %d, "
              "EndpointSlices %d, Pods %d of which %d on the host network"
              % (NAMESPACES, max(POLICIES, 2 * NAMESPACES), SERVICES, SERVICES, SERVICES, PODS, HOSTNET))
        print("audited (in sync, %d guarded, %d exposed as expected) %.1f s after start; objects judged %d"
              % (NAMESPACES, len(exposed), took, value(text, "pxguard_audit_objects_judged_total") or 0))
        print("findings: %s" % ", ".join("%s=%d" % (m.group(1), float(m.group(2)))
                                          for m in re.finditer(r'^pxguard_audit_findings\{rule="(\w+)"\} (\S+)$', text, re.M)))
        print("RSS at start %.1f MiB; audited %.1f MiB; 2 s later %.1f MiB; peak (VmHWM) %.1f MiB; %.0f MB of list JSON served"
              % (idle / 1024, rss / 1024, settled / 1024, peak / 1024, api.bytes / 1e6))
        print("pod lists or watches without fieldSelector=spec.hostNetwork=true: %d" % len(unselected_pod_requests))
        ok = took <= 60 and peak <= 96 * 1024 and len(unselected_pod_requests) == 0
        print("targets (audited <= 60 s, peak RSS <= 96 MiB, no unselected pod list): %s" % ("met" if ok else "NOT met"))
        return 0 if ok else 1
    finally:
        pxguard.stop()
        api.shutdown()


if __name__ == "__main__":
    sys.exit(main())
