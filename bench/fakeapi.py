"""What the scale benchmarks share: a fake Kubernetes API over HTTPS on loopback that serves
generated objects, and the real `pxguard serve` started against it.

The API answers paged lists (`limit`/`continue`) of each collection, watches that send a
bookmark every 0.5 s (and `410 Gone` as an ERROR event once the collection was compacted past
their version, as the real API server does), the provisioner's Lease held by a live other
replica (so pxguard only watches, as every replica does), and 409 to every write.
"""
import http.server
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
from procfs import Process  # noqa: E402

LEASE = "/apis/coordination.k8s.io/v1/namespaces/pxguard-system/leases/pxguard-provisioner"


class Collection:
    """One list endpoint: `make(i)` is item i; `count(query)` how many a list with that query holds."""

    def __init__(self, resource, kind, make, count):
        self.resource, self.kind, self.make, self.count = resource, kind, make, count
        self.completed = 0  # lists served to their last page


class FakeAPI:
    def __init__(self, work, collections):
        self.collections = {path: c for path, c in collections.items()}
        self.lock = threading.Lock()
        self.rv = 1000
        self.compacted = 0
        self.bytes = 0
        self.crt, key = os.path.join(work, "api.crt"), os.path.join(work, "api.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                        "-keyout", key, "-out", self.crt, "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        api = self

        class Handler(_Handler):
            owner = api

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.crt, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = "https://127.0.0.1:%d" % self.server.server_address[1]

    def compact(self):
        """A new resourceVersion that every open watch is older than: each gets 410 Gone and relists."""
        with self.lock:
            self.rv += 1
            self.compacted = self.rv

    def all_listed(self, times):
        with self.lock:
            return all(c.completed >= times for c in self.collections.values())

    def shutdown(self):
        self.server.shutdown()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner = None  # the FakeAPI, set by a subclass per server

    def log_message(self, *args):
        pass

    def send_json(self, code, obj):
        body = json.dumps(obj, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        with self.owner.lock:
            self.owner.bytes += len(body)

    def do_GET(self):
        api = self.owner
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == LEASE:
            now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + ".%06dZ" % (time.time() % 1 * 1e6)
            return self.send_json(200, {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                                        "metadata": {"name": "pxguard-provisioner", "namespace": "pxguard-system", "resourceVersion": "7"},
                                        "spec": {"holderIdentity": "other-replica", "leaseDurationSeconds": 15,
                                                 "acquireTime": now, "renewTime": now, "leaseTransitions": 1}})
        collection = api.collections.get(url.path)
        if collection is None:
            return self.send_json(404, {"kind": "Status", "code": 404, "reason": "NotFound", "message": "not found"})
        count = collection.count(query)
        if query.get("watch") in ("1", "true"):
            return self.watch(query)
        limit = int(query.get("limit", "500"))
        start = int(query.get("continue") or 0)
        end = min(count, start + limit)
        with api.lock:
            meta = {"resourceVersion": str(api.rv)}
        if end < count:
            meta["continue"] = str(end)
        items = [collection.make(i) for i in range(start, end)]
        self.send_json(200, {"kind": collection.kind, "apiVersion": "v1", "metadata": meta, "items": items})
        if end >= count:
            with api.lock:
                collection.completed += 1

    def watch(self, query):
        api = self.owner
        start = int(query.get("resourceVersion") or 0)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(event):
            data = (json.dumps(event) + "\n").encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        deadline = time.time() + float(query.get("timeoutSeconds", "300"))
        try:
            while time.time() < deadline:
                with api.lock:
                    gone = start < api.compacted
                if gone:
                    chunk({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                                       "reason": "Expired", "code": 410, "message": "too old resource version"}})
                    break
                chunk({"type": "BOOKMARK", "object": {"kind": "Namespace", "metadata": {"resourceVersion": str(start)}}})
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


class PXGuard:
    """`pxguard serve` against the fake API with the given config (give `nodeCIDRs` and `guardBackend`:
    the fake API serves no Nodes and no discovery); `process` reads its /proc entry only while the
    command line there is this binary's."""

    def __init__(self, binary, work, api, config):
        with open(os.path.join(work, "token"), "w") as f:
            f.write("bench-token\n")
        with open(os.path.join(work, "config.yaml"), "w") as f:
            f.write(config)
        self.started = time.time()
        self.proc = subprocess.Popen([binary, "serve", "--dev-certs", "--cert-dir", os.path.join(work, "certs"),
                                      "--listen", "127.0.0.1:0", "--config", os.path.join(work, "config.yaml"),
                                      "--kube-api", api.url, "--kube-token-file", os.path.join(work, "token"),
                                      "--kube-ca", api.crt, "--shutdown-delay", "0"],
                                     stderr=subprocess.PIPE, text=True)
        try:
            self.port = None
            for line in self.proc.stderr:  # the "listening" line, after any about the API
                self.port = json.loads(line).get("port")
                if self.port:
                    break
            if not self.port:
                raise SystemExit("pxguard exited before listening: %s" % self.proc.wait())
            threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()
            self.process = Process(self.proc.pid, binary)
        except BaseException:
            self.stop()  # never leave a server behind
            raise
        self.client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.client.check_hostname = False
        self.client.verify_mode = ssl.CERT_NONE

    def metrics(self):
        if self.proc.poll() is not None:
            raise SystemExit("pxguard exited: %s" % self.proc.returncode)
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw, self.client.wrap_socket(raw) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                piece = s.recv(65536)
                if not piece:
                    break
                data += piece
        return data.decode(errors="replace")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def value(text, name):
    """The sample `name` (with its labels, if any) in a /metrics text, or None."""
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None
