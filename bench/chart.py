"""Bar chart of median req/s and p99 per target from compare.sh output."""
import re, sys, statistics
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"^(\S+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)(us|ms)\s+([\d.]+)(us|ms)\s+(\S+)", line)
    if m:
        name = m.group(1)
        p99 = float(m.group(6)) * (1000 if m.group(7) == "ms" else 1)
        rows.setdefault(name, []).append((float(m.group(3)), p99))
if not rows:
    sys.exit("no rows")
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--root-user-action=ignore", "matplotlib"], check=True)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
names = list(rows)
rps = [statistics.median(r[0] for r in rows[n]) for n in names]
p99 = [statistics.median(r[1] for r in rows[n]) for n in names]
fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
a.bar(names, rps, color=["#999", "#6a9fd8", "#e07b39", "#f2b36f", "#bbb"][: len(names)])
a.set_title("throughput (req/s, median of rounds)")
b.bar(names, p99, color=["#999", "#6a9fd8", "#e07b39", "#f2b36f", "#bbb"][: len(names)])
b.set_title("p99 latency (µs)")
for ax, vals in ((a, rps), (b, p99)):
    for i, v in enumerate(vals):
        ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=8)
fig.suptitle("3.3 KB pod review over TLS, wrk 32 keep-alive connections, same machine, same run")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
