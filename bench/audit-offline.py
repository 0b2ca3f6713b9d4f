#!/usr/bin/env python3
"""`pxguard audit` over a generated cluster, timed: wall seconds and peak RSS.

The cluster is what `kubectl get namespaces,networkpolicies,pods,services,endpoints,
endpointslices -A -o json` prints for NAMESPACES guarded namespaces, each with its two
guard policies, POLICIES tenant policies (ingress and egress, 2 KiB annotations each),
SERVICES Services, and, in every 100th namespace, a bypass policy, a host-network Pod
and a Service on a node address (so the exposed count is known).

usage: bench/audit-offline.py [BINARY] [--namespaces 2000] [--policies 8] [--services 5]
Default binary: .build/release/pxguard. Prints one JSON line.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile


def cluster(namespaces, policies, services):
    items = []
    managed = {"app.kubernetes.io/managed-by": "pxguard"}

    def np(name, ns, spec, labels=None, annotations=None):
        meta = {"name": name, "namespace": ns, "uid": f"{ns}-{name}"}
        if labels:
            meta["labels"] = labels
        if annotations:
            meta["annotations"] = annotations
        return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta, "spec": spec}

    for n in range(namespaces):
        ns = "tenant-%04d" % n
        items.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {
            "pxguard.io/guarded": "true", "pod-security.kubernetes.io/enforce": "baseline"}}})
        items.append(np("block-9001-for-non-system-users", ns, {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["70.0.0.0/16"]}}]}]}, managed))
        items.append(np("allow-api", ns, {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
            {"to": [{"ipBlock": {"cidr": "70.0.0.0/16"}}], "ports": [{"protocol": "TCP", "port": 6443}]}]}, managed))
        for p in range(policies):
            items.append(np("tenant-%d" % p, ns, {
                "podSelector": {"matchLabels": {"app": "a%d" % p}}, "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"podSelector": {}}]}],
                "egress": [{"to": [{"ipBlock": {"cidr": "10.%d.0.0/16" % p}}, {"namespaceSelector": {}}],
                            "ports": [{"protocol": "TCP", "port": 5432 + p}, {"protocol": "UDP", "port": 53}]}]},
                annotations={"note": "x" * 2048}))
        for s in range(services):
            items.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc-%d" % s, "namespace": ns},
                          "spec": {"type": "ClusterIP", "clusterIP": "10.96.%d.%d" % (n % 250, s),
                                   "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}})
        if n % 100 == 0:
            items.append(np("open", ns, {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
                {"to": [{"ipBlock": {"cidr": "70.0.0.0/16"}}], "ports": [{"port": 9001}]}]}))
            items.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "agent", "namespace": ns},
                          "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "busybox"}]},
                          "status": {"phase": "Running"}})
            items.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hijack", "namespace": ns},
                          "spec": {"externalIPs": ["70.0.0.10"], "ports": [{"port": 9001}]}})
    return {"apiVersion": "v1", "kind": "List", "items": items}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary", nargs="?", default=".build/release/pxguard")
    parser.add_argument("--namespaces", type=int, default=2000)
    parser.add_argument("--policies", type=int, default=8)
    parser.add_argument("--services", type=int, default=5)
    args = parser.parse_args()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(cluster(args.namespaces, args.policies, args.services), f)
        path = f.name
    try:
        run = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M", args.binary, "audit", "-f", path],
                             capture_output=True, text=True)
        timing = re.search(r"TIME ([0-9.]+) ([0-9]+)", run.stderr)
        summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
        expected_exposed = (args.namespaces + 99) // 100
        ok = run.returncode == 1 and f"{expected_exposed} exposed" in summary
        print(json.dumps({
            "namespaces": args.namespaces, "networkPolicies": args.namespaces * (args.policies + 2) + expected_exposed,
            "services": args.namespaces * args.services + expected_exposed, "inputBytes": os.path.getsize(path),
            "seconds": float(timing.group(1)) if timing else None,
            "maxRSSMiB": round(int(timing.group(2)) / 1024, 1) if timing else None,
            "exit": run.returncode, "summary": summary, "ok": ok}))
        sys.exit(0 if ok else 1)
    finally:
        os.unlink(path)


if __name__ == "__main__":
    main()
