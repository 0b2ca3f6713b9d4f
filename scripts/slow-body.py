"""The slow-body attack of issue 27 against the real binary: one address (127.0.0.1)
opens TLS connections at a steady handshake rate, each sending a request head that
announces a 4 KiB body and one byte of it, and holds them. Meanwhile well-behaved
clients from other loopback addresses send valid reviews: one on a new connection
each time (127.0.0.2), one over a keep-alive connection (127.0.0.3), and /metrics
is read at the end. Then: what share of their reviews was answered, the server's
peak RSS, what the transport counted. Loopback only, bounded in time.

Usage: slow-body.py PXGUARD_BINARY [CONNECTIONS] [HANDSHAKES_PER_SECOND] [SERVER_YAML]
  CONNECTIONS default 1500 (CI); the issue's full size is 8192 (ATTACK_FULL=1 in fault.sh).
  SERVER_YAML: extra lines under `server:` (for example the rate off, to measure shedding).
Exit 1 when fewer than 99% of either client's reviews are answered or peak RSS > 96 MiB.
"""
import json, os, shutil, socket, ssl, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from procfs import Process, ProcessMismatch  # noqa: E402

binary = sys.argv[1]
connections = int(sys.argv[2]) if len(sys.argv) > 2 else 1500
rate = float(sys.argv[3]) if len(sys.argv) > 3 else 200.0
server_yaml = sys.argv[4] if len(sys.argv) > 4 else ""
here = os.path.dirname(os.path.abspath(__file__))
review = open(os.path.join(here, "..", "bench", "reviews", "pod-create.json"), "rb").read()
limit_kib = 96 * 1024

work = tempfile.mkdtemp(prefix="pxguard-slow-body-")
with open(work + "/config.yaml", "w") as f:
    f.write("provisioning: {enabled: false}\n" + ("server:\n" + server_yaml if server_yaml else ""))
server = subprocess.Popen([binary, "serve", "--dev-certs", "--shutdown-delay", "0", "--listen", "127.0.0.1:0",
                           "--cert-dir", work + "/certs", "--config", work + "/config.yaml"],
                          stderr=subprocess.PIPE, text=True)
port = int(json.loads(server.stderr.readline())["port"])
threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
measured = Process(server.pid, binary)
ctx = ssl.create_default_context(cafile=work + "/certs/ca.crt")


def tls(source):
    raw = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def request(path=b"/validate", body=review, method=b"POST"):
    return (method + b" " + path + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


def answer(s, req):
    s.sendall(req)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError("closed before an answer")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError("closed mid-answer")
        rest += chunk
    return int(head.split(b" ")[1]), rest[:length]


def valid(status, payload):
    return status == 200 and json.loads(payload)["response"]["allowed"] is True


running = [True]
peak = [0]
results = {"new": [0, 0], "keep-alive": [0, 0]}  # answered, asked
errors = {"new": [], "keep-alive": []}


def sample():
    while running[0]:
        try:
            peak[0] = max(peak[0], measured.rss_kib())
        except (OSError, ProcessMismatch):
            return
        time.sleep(0.02)


def new_connection_client():
    while running[0]:
        results["new"][1] += 1
        try:
            s = tls("127.0.0.2")
            if valid(*answer(s, request())):
                results["new"][0] += 1
            s.close()
        except Exception as error:  # noqa: BLE001
            errors["new"].append(repr(error))
        time.sleep(0.1)


def keep_alive_client():
    s = None
    while running[0]:
        results["keep-alive"][1] += 1
        try:
            if s is None:
                s = tls("127.0.0.3")
            if valid(*answer(s, request())):
                results["keep-alive"][0] += 1
        except Exception as error:  # noqa: BLE001
            errors["keep-alive"].append(repr(error))
            s = None
        time.sleep(0.1)


# Warm up, then start the clients and the attack.
w = tls("127.0.0.2")
answer(w, request())
w.close()
idle_rss = measured.rss_kib()
threads = [threading.Thread(target=f, daemon=True) for f in (sample, new_connection_client, keep_alive_client)]
for t in threads:
    t.start()

held, failed = [], 0
slow = request(body=b"x" * 4096)[:-4095]  # the head and one byte of the 4 KiB body
start = time.monotonic()
for i in range(connections):
    delay = start + i / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    try:
        s = tls("127.0.0.1")
        s.sendall(slow)
        held.append(s)
    except Exception:  # noqa: BLE001  (refused or shed: the attack goes on)
        failed += 1
attack_seconds = time.monotonic() - start
time.sleep(1.0)  # the clients keep going a moment after the last attacking connection

metrics_ok = False
try:
    m = tls("127.0.0.4")
    status, body = answer(m, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    metrics_ok = status == 200
    metrics = {l.split(" ")[0]: l.split(" ")[1] for l in body.decode().splitlines() if l.startswith("pxguard_")}
    m.close()
except Exception as error:  # noqa: BLE001
    metrics = {}
    print(f"/metrics unreachable: {error!r}")
running[0] = False
for t in threads[1:]:
    t.join(timeout=10)
open_at_end = sum(1 for s in held if s.fileno() >= 0)
for s in held:
    s.close()
server.terminate()
code = server.wait(timeout=30)
shutil.rmtree(work, True)

share = {k: (v[0] / v[1] if v[1] else 0.0) for k, v in results.items()}
print(f"slow-body attack: {connections} TLS connections from 127.0.0.1 over {attack_seconds:.1f} s "
      f"({connections / attack_seconds:.0f} handshakes/s), each a head and 1 byte of a 4 KiB body; {failed} refused at connect"
      + (f"; server: {' '.join(server_yaml.split())}" if server_yaml else ""))
print(f"new-connection reviews (127.0.0.2): {results['new'][0]}/{results['new'][1]} answered ({100 * share['new']:.1f}%)")
print(f"keep-alive reviews (127.0.0.3): {results['keep-alive'][0]}/{results['keep-alive'][1]} answered ({100 * share['keep-alive']:.1f}%)")
print(f"/metrics reachable at the end: {metrics_ok}; shed {metrics.get('pxguard_connections_shed_total')}, "
      f"timeouts {metrics.get('pxguard_connection_timeouts_total')}, open {metrics.get('pxguard_open_connections')}, "
      f"rejected {metrics.get('pxguard_connections_rejected_total')}")
print(f"RSS: idle {idle_rss} kB, peak {peak[0]} kB (bound {limit_kib} kB); exit code {code}")
problems = []
for kind in ("new", "keep-alive"):
    if share[kind] < 0.99:
        problems.append(f"{kind} reviews answered {100 * share[kind]:.1f}% < 99% (first errors: {errors[kind][:3]})")
if not metrics_ok:
    problems.append("/metrics unreachable during the attack")
if peak[0] > limit_kib:
    problems.append(f"peak RSS {peak[0]} kB over 96 MiB")
if code != 0:
    problems.append(f"exit code {code}")
if problems:
    print("FAIL: " + "; ".join(problems))
    sys.exit(1)
print("slow-body attack passed")
