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
import http.server
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
from procfs import Process  # noqa: E402

NAMESPACES = int(os.environ.get("NAMESPACES", "2000"))
POLICIES = int(os.environ.get("POLICIES", "20000"))
SERVICES = int(os.environ.get("SERVICES", "10000"))
PODS = int(os.environ.get("PODS", "20000"))
HOSTNET = int(os.environ.get("HOSTNET", "20"))
TIMEOUT = float(os.environ.get("TIMEOUT", "300"))

state = {"rv": 1000, "bytes": 0, "unselected_pod_requests": 0, "pod_items_served": 0}
lock = threading.Lock()
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


COLLECTIONS = {
    "/api/v1/namespaces": ("namespaces", lambda: NAMESPACES, namespace, "NamespaceList"),
    "/apis/networking.k8s.io/v1/networkpolicies": ("networkpolicies", lambda: max(POLICIES, 2 * NAMESPACES), policy, "NetworkPolicyList"),
    "/api/v1/services": ("services", lambda: SERVICES, service, "ServiceList"),
    "/api/v1/endpoints": ("endpoints", lambda: SERVICES, endpoints, "EndpointsList"),
    "/apis/discovery.k8s.io/v1/endpointslices": ("endpointslices", lambda: SERVICES, slice_, "EndpointSliceList"),
    "/api/v1/pods": ("pods", lambda: HOSTNET, hostnet_pod, "PodList"),
}
LEASE = "/apis/coordination.k8s.io/v1/namespaces/pxguard-system/leases/pxguard-provisioner"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send_json(self, code, obj):
        body = json.dumps(obj, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        with lock:
            state["bytes"] += len(body)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == LEASE:
            now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".%06dZ" % (time.time() % 1 * 1e6)
            return self.send_json(200, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                        "metadata": {"name": "pxguard-provisioner", "namespace": "pxguard-system", "resourceVersion": "7"},
                                        "spec": {"holderIdentity": "other-replica", "leaseDurationSeconds": 15,
                                                 "acquireTime": now, "renewTime": now, "leaseTransitions": 1}})
        if url.path not in COLLECTIONS:
            return self.send_json(404, {"kind": "Status", "code": 404, "reason": "NotFound", "message": "not found"})
        resource, count, make, kind = COLLECTIONS[url.path]
        if resource == "pods" and query.get("fieldSelector") != "spec.hostNetwork=true":
            with lock:
                state["unselected_pod_requests"] += 1
            # What a real API server would answer: every pod (PODS of them). Counted as a failure.
            count = lambda: PODS  # noqa: E731
        if query.get("watch") in ("1", "true"):
            return self.watch(query)
        limit = int(query.get("limit", "500"))
        start = int(query.get("continue") or 0)
        end = min(count(), start + limit)
        items = [make(i) for i in range(start, end)]
        meta = {"resourceVersion": str(state["rv"])}
        if end < count():
            meta["continue"] = str(end)
        self.send_json(200, {"kind": kind, "apiVersion": "v1", "metadata": meta, "items": items})

    def watch(self, query):
        start = int(query.get("resourceVersion") or 0)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(text):
            data = text.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        deadline = time.time() + float(query.get("timeoutSeconds", "300"))
        try:
            while time.time() < deadline:
                chunk(json.dumps({"type": "BOOKMARK", "object": {"kind": "Namespace",
                                                                 "metadata": {"resourceVersion": str(start)}}}) + "\n")
                time.sleep(0.5)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True

    def do_PUT(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_json(409, {"kind": "Status", "code": 409, "reason": "Conflict", "message": "held by other-replica"})

    do_POST = do_PUT
    do_PATCH = do_PUT


def main():
    binary = sys.argv[1]
    rendered = subprocess.run([binary, "render", "policies", "--namespace", "tmpl-ns"], check=True, capture_output=True, text=True)
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d and d.get("metadata", {}).get("namespace") == "tmpl-ns"]
    GUARDS.extend(sorted(docs, key=lambda d: d["metadata"]["name"]))
    assert len(GUARDS) == 2, "expected the two namespaced guard policies from render policies"
    work = tempfile.mkdtemp(prefix="pxguard-audit-scale-")
    crt, key = os.path.join(work, "api.crt"), os.path.join(work, "api.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    with open(os.path.join(work, "token"), "w") as f:
        f.write("bench-token\n")
    with open(os.path.join(work, "config.yaml"), "w") as f:
        f.write("provisioning: {enabled: true, resyncSeconds: 3600}\naudit: {enabled: true}\n")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(crt, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = "https://127.0.0.1:%d" % server.server_address[1]

    started = time.time()
    proc = subprocess.Popen([binary, "serve", "--dev-certs", "--cert-dir", os.path.join(work, "certs"), "--listen", "127.0.0.1:0",
                             "--config", os.path.join(work, "config.yaml"), "--kube-api", api,
                             "--kube-token-file", os.path.join(work, "token"), "--kube-ca", crt, "--shutdown-delay", "0"],
                            stderr=subprocess.PIPE, text=True)
    first = json.loads(proc.stderr.readline())
    port = int(first["port"])
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    process = Process(proc.pid, binary)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE

    def metrics():
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, client.wrap_socket(raw) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                piece = s.recv(65536)
                if not piece:
                    break
                data += piece
        return data.decode(errors="replace")

    def value(text, name):
        m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
        return float(m.group(1)) if m else None

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
            if time.time() - started > TIMEOUT:
                raise SystemExit("timed out after %.0f s" % TIMEOUT)
            if proc.poll() is not None:
                raise SystemExit("pxguard exited: %s" % proc.returncode)
            text = metrics()
            if (value(text, "pxguard_audit_synced") == 1 and value(text, "pxguard_audit_guarded_namespaces") == NAMESPACES
                    and value(text, "pxguard_audit_exposed_namespaces") == len(exposed)):
                break
            time.sleep(0.25)
        took = time.time() - started
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
              % (idle / 1024, rss / 1024, settled / 1024, peak / 1024, state["bytes"] / 1e6))
        print("pod lists or watches without fieldSelector=spec.hostNetwork=true: %d" % state["unselected_pod_requests"])
        ok = took <= 60 and peak <= 96 * 1024 and state["unselected_pod_requests"] == 0
        print("targets (audited <= 60 s, peak RSS <= 96 MiB, no unselected pod list): %s" % ("met" if ok else "NOT met"))
        return 0 if ok else 1
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        server.shutdown()


if __name__ == "__main__":
    sys.exit(main())
