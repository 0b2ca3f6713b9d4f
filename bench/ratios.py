"""Throughput and p99 ratios of pxguard against the baselines, each computed within
one run of the harness (rows of different runs are never mixed: the machine drifts)."""
import sys
from results import medians

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
