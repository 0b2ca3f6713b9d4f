"""Start pxguard, time until /readyz answers 200, then report idle RSS."""
import os, socket, ssl, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from procfs import Process  # noqa: E402  (RSS read only after the PID's command line is pxguard's)

binary = sys.argv[1]
work = tempfile.mkdtemp(prefix="pxguard-startup-")
subprocess.run([binary, "certs", "--out", work + "/certs"], check=True, capture_output=True)
context = ssl.create_default_context(cafile=work + "/certs/ca.crt")
samples = []
rss = 0
for _ in range(5):
    start = time.monotonic()
    proc = subprocess.Popen([binary, "serve", "--dev-certs", "--shutdown-delay", "0", "--listen", "127.0.0.1:0", "--cert-dir", work + "/certs"],
                            stderr=subprocess.PIPE, text=True)
    port = None
    line = proc.stderr.readline()
    port = int(line.split('"port":')[1].split(',')[0].split('}')[0])
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as raw:
                with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                    s.sendall(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(64).startswith(b"HTTP/1.1 200"):
                        break
        except OSError:
            pass
        time.sleep(0.001)
    samples.append((time.monotonic() - start) * 1000)
    time.sleep(0.3)
    rss = max(rss, Process(proc.pid, binary).rss_kib())
    proc.terminate()
    proc.wait(timeout=10)
samples.sort()
print(f"start-up to ready: median {samples[len(samples)//2]:.1f} ms (of {len(samples)} starts, TLS probe included)")
print(f"idle RSS: {rss} kB")
