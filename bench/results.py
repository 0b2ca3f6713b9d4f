"""Reading compare.sh output: the median req/s and p99 (µs) of each target's rounds."""
import re, statistics

def medians(path):
    rows = {}
    for line in open(path):
        m = re.match(r"^(\S+)\s+\d+\s+([\d.]+)\s+[\d.]+(?:us|ms)\s+([\d.]+)(us|ms)\s", line)
        if m:
            p99 = float(m.group(3)) * (1000 if m.group(4) == "ms" else 1)
            rows.setdefault(m.group(1), []).append((float(m.group(2)), p99))
    return {n: (statistics.median(r for r, _ in v), statistics.median(p for _, p in v)) for n, v in rows.items()}
