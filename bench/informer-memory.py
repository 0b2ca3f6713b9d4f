#!/usr/bin/env python3
"""Informer memory at scale: the real `pxguard serve` (release build) against a fake
Kubernetes API over HTTPS on loopback that holds NAMESPACES namespaces, each with 16
labels, 4 KiB of annotations and a managedFields entry, and POLICIES NetworkPolicies
(each labelled app.kubernetes.io/managed-by: pxguard, as a tenant may, with 2 KiB of
annotations). pxguard lists both in pages and watches them; the Lease is held by a
live other replica, so this one only watches (every replica does: R6 reads the view).
Then RELISTS times the watches get `410 Gone` and pxguard lists everything again.

Prints RSS (VmRSS) after the first sync and after each relist, and the peak (VmHWM).
Usage: bench/informer-memory.py BINARY   (env NAMESPACES, POLICIES, RELISTS, PAGE)
Loopback only; bounded: gives up after TIMEOUT seconds (default 900).
"""
import os
import sys
import tempfile
import time

from fakeapi import Collection, FakeAPI, PXGuard, value

NAMESPACES = int(os.environ.get("NAMESPACES", "100000"))
POLICIES = int(os.environ.get("POLICIES", "100000"))
RELISTS = int(os.environ.get("RELISTS", "3"))
TIMEOUT = float(os.environ.get("TIMEOUT", "900"))

BLOB4K = "n" * 4096
BLOB2K = "p" * 2048


def namespace(i):
    name = "ns-%06d" % i
    labels = {"kubernetes.io/metadata.name": name, "pxguard.io/guarded": "true",
              "pod-security.kubernetes.io/enforce": "baseline"}
    for k in range(13):
        labels["example.com/team-label-%02d" % k] = ("value-%02d-" % k).ljust(33, "v")
    return {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {
            "name": name, "uid": "00000000-0000-0000-0000-%012d" % i, "resourceVersion": str(100 + i),
            "creationTimestamp": "2026-01-01T00:00:00Z", "labels": labels,
            "annotations": {"pxguard.io/policies": "block-9001-for-non-system-users,allow-api", "example.com/blob": BLOB4K},
            "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1", "time": "2026-01-01T00:00:00Z",
                               "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {"f:labels": {("f:" + k): {} for k in labels}}}}],
        },
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"},
    }


def policy(i):
    ns = "ns-%06d" % (i % max(NAMESPACES, 1))
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "tenant-np-%06d" % i, "namespace": ns, "resourceVersion": str(200000 + i),
                     "labels": {"app.kubernetes.io/managed-by": "pxguard"}, "annotations": {"note": BLOB2K}},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"podSelector": {}}], "ports": [{"protocol": "TCP", "port": 8080}]}]},
    }


CONFIG = """nodeCIDRs: [70.0.0.0/16]
guardBackend: networkpolicy
provisioning: {enabled: true, resyncSeconds: 3600}
"""

COLLECTIONS = {"/api/v1/namespaces": Collection("namespaces", "NamespaceList", namespace, lambda q: NAMESPACES),
               "/apis/networking.k8s.io/v1/networkpolicies": Collection("networkpolicies", "NetworkPolicyList", policy,
                                                                        lambda q: POLICIES)}


def main():
    binary = sys.argv[1]
    work = tempfile.mkdtemp(prefix="pxguard-informer-mem-")
    api = FakeAPI(work, COLLECTIONS)
    pxguard = PXGuard(binary, work, api, CONFIG)
    process = pxguard.process

    def wait_synced(lists):
        while time.time() - pxguard.started < TIMEOUT:
            if api.all_listed(lists):
                text = pxguard.metrics()
                if value(text, "pxguard_view_synced") == 1 and value(text, 'pxguard_view_objects{kind="namespace"}') == NAMESPACES:
                    return text
            time.sleep(0.5)
        raise SystemExit("timed out after %.0f s waiting for list %d" % (TIMEOUT, lists))

    def mib(kib):
        return kib / 1024

    try:
        idle = process.status_kib("VmRSS")
        t0 = time.time()
        text = wait_synced(1)
        synced = process.status_kib("VmRSS")
        print("namespaces %d (16 labels, 4 KiB annotations, managedFields), NetworkPolicies %d (2 KiB annotations, labelled managed-by: pxguard)"
              % (NAMESPACES, POLICIES))
        print("RSS at start %.1f MiB; synced after %.1f s: RSS %.1f MiB (view: %d namespaces, %d policies)"
              % (mib(idle), time.time() - t0, mib(synced), value(text, 'pxguard_view_objects{kind="namespace"}'),
                 value(text, 'pxguard_view_objects{kind="policy"}')))
        after = []
        for r in range(1, RELISTS + 1):
            api.compact()
            t0 = time.time()
            wait_synced(1 + r)
            after.append(process.status_kib("VmRSS"))
            print("relist %d (410 Gone) done after %.1f s: RSS %.1f MiB" % (r, time.time() - t0, mib(after[-1])))
        peak = process.status_kib("VmHWM")
        objects = NAMESPACES + POLICIES
        print("peak RSS (VmHWM) %.1f MiB over %d list passes, %.0f MB of list JSON served"
              % (mib(peak), 1 + RELISTS, api.bytes / 1e6))
        if objects:
            print("RSS over start per object (namespaces + NetworkPolicies): %.0f bytes; per namespace: %.0f bytes"
                  % ((synced - idle) * 1024 / objects, (synced - idle) * 1024 / max(NAMESPACES, 1)))
        limit = 96 * 1024
        ok = synced <= limit and all(a <= limit for a in after) and peak <= limit
        print("target RSS <= 96 MiB synced and after every relist (peak included): %s" % ("met" if ok else "NOT met"))
        return 0 if ok else 1
    finally:
        pxguard.stop()
        api.shutdown()


if __name__ == "__main__":
    sys.exit(main())
