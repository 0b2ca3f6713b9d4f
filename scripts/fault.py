"""Load-and-fault test: hundreds of hostile connections against a real pxguard
while valid reviews keep getting correct answers with bounded latency; then no
leaked descriptors and bounded RSS growth. Loopback only, bounded in time.

Usage: fault.py PXGUARD_BINARY [SECONDS]
"""
import json, os, random, socket, ssl, statistics, subprocess, sys, tempfile, threading, time

binary = sys.argv[1]
duration = float(sys.argv[2]) if len(sys.argv) > 2 else 15.0
here = os.path.dirname(os.path.abspath(__file__))
review = open(os.path.join(here, "..", "bench", "reviews", "pod-create.json"), "rb").read()
denied = json.loads(review)
denied["request"]["object"]["spec"]["hostNetwork"] = True
denied["request"]["userInfo"]["username"] = "alice"
denied = json.dumps(denied).encode()

work = tempfile.mkdtemp(prefix="pxguard-fault-")
with open(work + "/config.yaml", "w") as f:
    f.write("server:\n  handshakeTimeoutSeconds: 2\n  headerTimeoutSeconds: 2\n  bodyTimeoutSeconds: 2\n"
            "  idleTimeoutSeconds: 5\n  maxBodyBytes: 65536\nprovisioning: {enabled: false}\n")
proc = subprocess.Popen([binary, "serve", "--dev-certs", "--shutdown-delay", "0", "--listen", "127.0.0.1:0", "--cert-dir", work + "/certs",
                         "--config", work + "/config.yaml"], stderr=subprocess.PIPE, text=True)
port = int(proc.stderr.readline().split('"port":"')[1].split('"')[0])
threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # drain logs
ctx = ssl.create_default_context(cafile=work + "/certs/ca.crt")


def fds():
    return len(os.listdir(f"/proc/{proc.pid}/fd"))


def rss():
    with open(f"/proc/{proc.pid}/status") as f:
        return int(next(l for l in f if l.startswith("VmRSS")).split()[1])


def tls():
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def post(body, extra=b""):
    return (b"POST /validate?timeout=10s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra +
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def read_response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise EOFError("closed before a response")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ")[1])
    length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")), 0)
    while len(rest) < length:
        rest += s.recv(65536)
    return status, rest[:length], head


baseline_fds, baseline_rss = fds(), rss()
stop = time.monotonic() + duration
latencies, failures, hostile = [], [], {"ok": 0, "unexpected": []}
lock = threading.Lock()


def good_client():
    s = tls()
    n = 0
    while time.monotonic() < stop:
        body, allowed = (denied, False) if n % 5 == 0 else (review, True)
        t0 = time.monotonic()
        try:
            s.sendall(post(body))
            status, payload, _ = read_response(s)
            answer = json.loads(payload)["response"]
            if status != 200 or answer["allowed"] != allowed:
                failures.append(f"wrong answer {status} {answer.get('allowed')}")
        except Exception as e:  # noqa: BLE001
            failures.append(f"{type(e).__name__}: {e}")
            s = tls()
        latencies.append(time.monotonic() - t0)
        n += 1
        time.sleep(0.002)


def expect_status(payload, status):
    def run():
        try:
            s = tls()
            s.sendall(payload)
            got, _, head = read_response(s)
            ok = got == status and b"connection: close" in head.lower()
            with lock:
                hostile["ok" if ok else "unexpected"] += 1 if ok else 0
                if not ok:
                    hostile["unexpected"].append(f"wanted {status}, got {got}")
        except Exception as e:  # noqa: BLE001
            with lock:
                hostile["unexpected"].append(f"wanted {status}: {type(e).__name__}")
    return run


held = []


def stall_handshake():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # a ClientHello that stops
    held.append(s)


def stall_headers():
    s = tls()
    s.sendall(b"POST /validate HTTP/1.1\r\nHost: x\r\n")
    held.append(s)


def stall_body():
    s = tls()
    s.sendall(b"POST /validate HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"a\"")
    held.append(s)


def noise():
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(os.urandom(random.randint(1, 4096)))
    s.close()


def close_early():
    s = tls()
    s.close()


def slow_reader():
    # Many pipelined requests and never read: the server stops at its output bound.
    s = tls()
    try:
        for _ in range(200):
            s.sendall(post(review))
    except OSError:
        pass
    held.append(s)


attacks = (
    [stall_handshake] * 150 + [stall_headers] * 100 + [stall_body] * 60 + [noise] * 60 + [close_early] * 60
    + [slow_reader] * 10
    + [expect_status(b"POST /validate HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431)] * 40
    + [expect_status(b"POST /validate HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400)] * 30
    + [expect_status(b"POST /validate HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400)] * 30
    + [expect_status(post(b"x" * 70000), 413)] * 20
    + [expect_status(b"POST /validate HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501)] * 20
)
random.shuffle(attacks)
good = [threading.Thread(target=good_client) for _ in range(4)]
for t in good:
    t.start()
workers = []
for attack in attacks:
    def run(a=attack):
        try:
            a()
        except Exception as e:  # noqa: BLE001
            with lock:
                hostile["unexpected"].append(f"{a.__name__}: {type(e).__name__}: {e}")
    t = threading.Thread(target=run)
    t.start()
    workers.append(t)
    time.sleep(duration / 3 / len(attacks))
for t in workers + good:
    t.join()
peak_rss = rss()
for s in held:
    s.close()
time.sleep(3)  # handshake/header/body timeouts (2 s) have passed for anything left
end_fds, end_rss = fds(), rss()
proc.terminate()
code = proc.wait(timeout=30)

latencies.sort()
p99 = latencies[int(len(latencies) * 0.99)] * 1000 if latencies else float("inf")
print(f"valid reviews: {len(latencies)} answered, {len(failures)} wrong or failed; "
      f"latency median {statistics.median(latencies) * 1000:.2f} ms, p99 {p99:.2f} ms")
print(f"hostile connections: {len(attacks)}; expected error statuses seen {hostile['ok']}; unexpected {len(hostile['unexpected'])}")
print(f"descriptors: {baseline_fds} before, {end_fds} after; RSS {baseline_rss} kB before, {peak_rss} kB peak, {end_rss} kB after")
print(f"exit code after SIGTERM: {code}")
problems = []
if failures:
    problems.append(f"valid reviews failed: {failures[:3]}")
if p99 > 250:
    problems.append(f"p99 {p99:.1f} ms over the 250 ms bound")
if hostile["unexpected"]:
    problems.append(f"unexpected hostile outcomes: {hostile['unexpected'][:5]}")
if end_fds > baseline_fds + 2:
    problems.append(f"descriptor leak: {baseline_fds} -> {end_fds}")
if end_rss - baseline_rss > 24 * 1024:
    problems.append(f"RSS grew by {end_rss - baseline_rss} kB (bound 24 MiB)")
if code != 0:
    problems.append(f"exit code {code}")
if problems:
    print("FAIL: " + "; ".join(problems))
    sys.exit(1)
print("fault test passed")
