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

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
from procfs import Process  # noqa: E402

NAMESPACES = int(os.environ.get("NAMESPACES", "100000"))
POLICIES = int(os.environ.get("POLICIES", "100000"))
RELISTS = int(os.environ.get("RELISTS", "3"))
TIMEOUT = float(os.environ.get("TIMEOUT", "900"))

state = {"rv": 1000, "compacted": 0, "completed": {"namespaces": 0, "networkpolicies": 0}, "bytes": 0}
lock = threading.Lock()

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


COLLECTIONS = {"/api/v1/namespaces": ("namespaces", NAMESPACES, namespace, "NamespaceList"),
               "/apis/networking.k8s.io/v1/networkpolicies": ("networkpolicies", POLICIES, policy, "NetworkPolicyList")}
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
        if query.get("watch") in ("1", "true"):
            return self.watch(resource, query)
        limit = int(query.get("limit", "500"))
        start = int(query.get("continue") or 0)
        end = min(count, start + limit)
        items = [make(i) for i in range(start, end)]
        meta = {"resourceVersion": str(state["rv"])}
        if end < count:
            meta["continue"] = str(end)
        self.send_json(200, {"kind": kind, "apiVersion": "v1", "metadata": meta, "items": items})
        if end >= count:
            with lock:
                state["completed"][resource] += 1

    def watch(self, resource, query):
        # Watches from a version older than the last compaction get 410 Gone, as
        # from the real API server: a relist is forced by compacting.
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
                with lock:
                    gone = start < state["compacted"]
                if gone:
                    chunk(json.dumps({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                                  "reason": "Expired", "code": 410,
                                                                  "message": "too old resource version"}}) + "\n")
                    break
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
    work = tempfile.mkdtemp(prefix="pxguard-informer-mem-")
    crt, key = os.path.join(work, "api.crt"), os.path.join(work, "api.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", crt, "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    with open(os.path.join(work, "token"), "w") as f:
        f.write("bench-token\n")
    with open(os.path.join(work, "config.yaml"), "w") as f:
        f.write("provisioning: {enabled: true, resyncSeconds: 3600}\n")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(crt, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    api = "https://127.0.0.1:%d" % server.server_address[1]

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

    started = time.time()

    def wait_synced(lists):
        while time.time() - started < TIMEOUT:
            with lock:
                done = all(state["completed"][r] >= lists for r in state["completed"])
            if done:
                text = metrics()
                if value(text, "pxguard_view_synced") == 1 and value(text, 'pxguard_view_objects{kind="namespace"}') == NAMESPACES:
                    return text
            if proc.poll() is not None:
                raise SystemExit("pxguard exited: %s" % proc.returncode)
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
            with lock:
                state["rv"] += 1
                state["compacted"] = state["rv"]
            t0 = time.time()
            wait_synced(1 + r)
            after.append(process.status_kib("VmRSS"))
            print("relist %d (410 Gone) done after %.1f s: RSS %.1f MiB" % (r, time.time() - t0, mib(after[-1])))
        peak = process.status_kib("VmHWM")
        objects = NAMESPACES + POLICIES
        print("peak RSS (VmHWM) %.1f MiB over %d list passes, %.0f MB of list JSON served"
              % (mib(peak), 1 + RELISTS, state["bytes"] / 1e6))
        if objects:
            print("RSS over start per object (namespaces + NetworkPolicies): %.0f bytes; per namespace: %.0f bytes"
                  % ((synced - idle) * 1024 / objects, (synced - idle) * 1024 / max(NAMESPACES, 1)))
        limit = 96 * 1024
        ok = synced <= limit and all(a <= limit for a in after) and peak <= limit
        print("target RSS <= 96 MiB synced and after every relist (peak included): %s" % ("met" if ok else "NOT met"))
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
