"""Throughput and p99 ratios of pxguard against the baselines, each computed within
one run of the harness (rows of different runs are never mixed: the machine drifts)."""
import re, statistics, sys

def medians(path):
    rows = {}
    for line in open(path):
        m = re.match(r"^(\S+)\s+\d+\s+([\d.]+)\s+[\d.]+(?:us|ms)\s+([\d.]+)(us|ms)\s", line)
        if m:
            p99 = float(m.group(3)) * (1000 if m.group(4) == "ms" else 1)
            rows.setdefault(m.group(1), []).append((float(m.group(2)), p99))
    return {n: (statistics.median(r for r, _ in v), statistics.median(p for _, p in v)) for n, v in rows.items()}

print(f"{'run':<34} {'pxguard':<10} {'vs':<12} {'req/s ratio':>11} {'p99 ratio':>10} {'vs Go':>7}")
for path in sys.argv[1:]:
    m = medians(path)
    px = next((n for n in ("pxguard", "pxguard-1") if n in m), None)
    limit = next((n for n in ("limit-nginx", "nginx-2w") if n in m), None)
    if not px or not limit:
        continue
    go = m["peer-go"][0] if "peer-go" in m else float("nan")
    print(f"{path.rsplit('/', 1)[-1]:<34} {px:<10} {limit:<12} {m[px][0] / m[limit][0]:>11.2f} "
          f"{m[px][1] / m[limit][1]:>10.2f} {m[px][0] / go:>7.2f}")
